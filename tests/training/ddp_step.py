"""One SGD step of MolsymModule with Lightning on ``devices`` CPU processes (gloo).

Usage: python ddp_step.py DEVICES DATA.extxyz OUT.pt GLOBAL_BATCH
Writes the model's state_dict after the step (rank 0). Run by tests/training/test_ddp.py.
"""

import functools
import sys

import pytorch_lightning as pl
import torch
from torch_geometric.loader import DataLoader

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from molsym.models import EquivariantModel
from molsym.training import Loss, MolsymModule


def run(devices: int, data: str, out: str, global_batch: int) -> None:
    torch.set_num_threads(1)
    graphs = [atoms_to_graph(a, 4.0, dtype=torch.float64) for a in read_file(data)]
    torch.manual_seed(0)
    model = EquivariantModel(cutoff=4.0, elements=[1, 6, 8], num_channels=8, num_layers=2,
                             l_max=1, radial_hidden=16, avg_num_neighbors=8.0).double()
    module = MolsymModule(model, Loss({"energy": 1.0, "forces": 10.0}),
                          optimizer=functools.partial(torch.optim.SGD, lr=0.05), ema_decay=0.0)
    loader = DataLoader(graphs[:global_batch], batch_size=global_batch // devices, shuffle=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        inference_mode=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    if trainer.is_global_zero:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
