"""A seconds-long ``molsym.training.run.train`` under DDP on 2 CPU processes (gloo).

Usage: python ddp_train.py DATA.extxyz RUN_DIR [OVERRIDE ...]
Run by tests/training/test_ddp.py; Lightning starts rank 1 by running this script again.
"""

import sys

from molsym.training.run import train
from tests.cli.cli_helpers import tiny_train_config

if __name__ == "__main__":
    data, run_dir, *extra = sys.argv[1:]
    cfg = tiny_train_config(data, run_dir, "trainer=ddp", "trainer.accelerator=cpu",
                            "trainer.devices=2", "num_threads=1", *extra)
    train(cfg, run_dir)
