"""Training from a sharded store (`molsym convert`, then `data.path=DIR`) equals training
from the file it was converted from."""

import csv
import json

import pytest

from molsym.cli.convert import main as convert_main
from molsym.training.run import train
from tests.cli.cli_helpers import tiny_train_config
from tests.data.test_shards import assert_close_tree


def _losses(run):
    with open(run / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(k, float(r[k])) for r in rows for k in ("train/loss", "val/loss") if r.get(k)]


@pytest.mark.parametrize("workers", [0, 2])
def test_training_from_the_store_gives_the_losses_of_the_in_memory_path(emt_xyz, tmp_path,
                                                                        workers):
    store = tmp_path / "store"
    assert convert_main([str(emt_xyz), "-o", str(store), "--frames-per-shard", "7",
                         "--workers", "1"]) == 0
    extra = ["trainer.max_epochs=2", f"data.num_workers={workers}"]
    memory, disk = tmp_path / "memory", tmp_path / "disk"
    a = train(tiny_train_config(emt_xyz, memory, *extra), memory)
    b = train(tiny_train_config(store, disk, *extra), disk)
    la, lb = _losses(memory), _losses(disk)
    assert len(la) >= 4 and [k for k, _ in la] == [k for k, _ in lb]
    assert [v for _, v in la] == pytest.approx([v for _, v in lb], rel=1e-6)
    for target, errors in a["metrics"].items():  # test errors of the deployed model
        assert errors["mae"] == pytest.approx(b["metrics"][target]["mae"], rel=1e-6)
    stats = [json.loads((p / "statistics.json").read_text()) for p in (memory, disk)]
    assert_close_tree(*stats)  # one pass in storage order: the same to rounding


def test_a_store_of_another_cutoff_is_one_line(capsys, emt_xyz, tmp_path):
    from molsym.cli.train import main

    store = tmp_path / "store4"
    assert convert_main([str(emt_xyz), "-o", str(store), "--cutoff", "4.0",
                         "--workers", "1"]) == 0
    assert main([f"data.path={store}", "trainer.max_epochs=1",
                 f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "converted with cutoff 4.0" in lines[0], lines
