"""`molsym train` through the real CLI: outputs, multirun, resume after kill -9, bad configs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from molsym.deploy import load_model
from molsym.training.evaluate import evaluate
from tests.cli.cli_helpers import tiny_args


def test_one_epoch_run_leaves_checkpoints_deploy_file_config_splits_metrics(trained_run, emt_xyz):
    ckpts = {p.name for p in (trained_run / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best") for n in ckpts)
    for name in ("model.pt", "config.yaml", "splits.json", "metrics.json", "statistics.json",
                 "logs/metrics.csv"):
        assert (trained_run / name).is_file(), name
    assert not list(trained_run.rglob("*.tmp"))
    splits = json.loads((trained_run / "splits.json").read_text())
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (24, 8, 8)
    payload = torch.load(trained_run / "model.pt", weights_only=True)
    assert payload["model_class"] == "equivariant" and payload["elements"] == [1, 6, 8]
    assert payload["config"]["num_channels"] == 8 and payload["cutoff"] == 5.0
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["forces"]["unit"] == "meV/Angstrom" and metrics["energy"]["unit"] == "meV"
    # The deploy file reproduces the test metrics of the run (same EMA weights).
    frames = read_file(emt_xyz)
    model = load_model(trained_run / "model.pt")
    graphs = [atoms_to_graph(frames[i], model.cutoff) for i in splits["test"]]
    again, _ = evaluate(model, graphs)
    for key in ("energy", "forces", "energy_per_atom"):
        assert again[key]["mae"] == pytest.approx(metrics[key]["mae"], rel=1e-4)


def test_multirun_sweep(emt_xyz, tmp_path):
    from molsym.cli.train import main

    args = tiny_args(emt_xyz, tmp_path / "unused", "data.num_train=8", "data.num_val=4",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert main(["-m", *args, "model.num_layers=1,2"]) == 0
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "model.pt").is_file()
    layers = [torch.load(tmp_path / "sweep" / j / "model.pt", weights_only=True)["config"]
              ["num_layers"] for j in ("0", "1")]
    assert layers == [1, 2]
    # summary.csv: one row per job with its swept value, overrides and test errors
    with open(tmp_path / "sweep" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert [r["model.num_layers"] for r in rows] == ["1", "2"]
    assert all(r["status"] == "ok" and "model.num_layers=" in r["overrides"] for r in rows)
    for r, job in zip(rows, ("0", "1"), strict=True):
        metrics = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        assert float(r["test_forces_mae_meV_per_Angstrom"]) == metrics["forces"]["mae"]


def test_tensorboard_logger_writes_events(emt_xyz, tmp_path):
    pytest.importorskip("tensorboard")  # the `tensorboard` extra (part of `dev`)
    from molsym.cli.train import main

    args = tiny_args(emt_xyz, tmp_path / "run", "data.num_train=8", "data.num_val=4",
                     "logger=tensorboard")
    assert main(args) == 0
    assert list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()  # CSV stays on


def _final_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False,
                      map_location="cpu")["state_dict"]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(emt_xyz, tmp_path):
    from molsym.cli.train import main

    common = ["data.num_train=32", "data.batch_size=4", "trainer.max_epochs=5"]
    assert main(tiny_args(emt_xyz, tmp_path / "a", *common)) == 0

    run_b = tmp_path / "b"
    cmd = [sys.executable, "-m", "molsym.cli.main", "train", *tiny_args(emt_xyz, run_b, *common)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = run_b / "checkpoints" / "last.ckpt"
    deadline = time.time() + 150
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL, "the run ended before it could be killed"
    assert torch.load(last, weights_only=False)["epoch"] < 4

    assert main(tiny_args(emt_xyz, run_b, *common, f"ckpt_path={last}")) == 0
    a, b = _final_state(tmp_path / "a"), _final_state(run_b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key
    assert (run_b / "model.pt").is_file()


def _one_error_line(capsys):
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("molsym train: error:")
    return err[0]


def test_unknown_key_is_one_line(capsys, emt_xyz, tmp_path):
    from molsym.cli.train import main

    assert main(tiny_args(emt_xyz, tmp_path, "model.num_chanels=3")) == 2
    assert "num_chanels" in _one_error_line(capsys)


def test_missing_data_file_is_one_line(capsys, tmp_path):
    from molsym.cli.train import main

    missing = tmp_path / "nope.extxyz"
    assert main(tiny_args(missing, tmp_path / "run")) in (1, 2)
    assert str(missing) in _one_error_line(capsys)


def test_empty_validation_split_is_one_line(capsys, emt_xyz, tmp_path):
    from molsym.cli.train import main

    assert main(tiny_args(emt_xyz, tmp_path / "run", "data.num_val=0")) == 2
    line = _one_error_line(capsys)
    assert "validation split is empty" in line and str(emt_xyz) in line
    assert "callbacks.checkpoint" in line and "callbacks.early_stopping" in line


def test_elements_not_covered_by_the_model_is_one_line(capsys, emt_xyz, tmp_path):
    from molsym.cli.train import main

    assert main(tiny_args(emt_xyz, tmp_path / "run", "model.elements=[1,6]")) == 2
    line = _one_error_line(capsys)
    assert "O" in line and str(emt_xyz) in line
