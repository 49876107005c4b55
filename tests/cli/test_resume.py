"""Resuming through the real CLI: the run's own config, refused changes of experiment,
checked checkpoints, the metrics history kept."""

import csv
import shutil

import pytest
import torch
import yaml

from tests.cli.cli_helpers import tiny_args, write_emt_frames


def _error_line(capsys):
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("molsym train: error:")
    return lines[0]


def _epochs(run):
    """Epochs with a validation loss in logs/metrics.csv (one row each)."""
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val/loss")]


@pytest.mark.parametrize("run_dir_given", [True, False])
def test_resume_takes_the_runs_config_and_keeps_the_metrics_history(emt_xyz, tmp_path,
                                                                     monkeypatch, run_dir_given):
    from molsym.cli.train import main

    run = tmp_path / "res"
    assert main(tiny_args(emt_xyz, run)) == 0
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    before = yaml.safe_load((run / "config.yaml").read_text())
    assert _epochs(run) == [0]
    last = run / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(tmp_path)  # where Hydra's default run folder would go
    where = [f"hydra.run.dir={run}"] if run_dir_given else []  # default: the run's folder
    assert main([f"ckpt_path={last}", *where, "trainer.max_epochs=2"]) == 0
    assert not (tmp_path / "outputs").exists()
    after = yaml.safe_load((run / "config.yaml").read_text())
    assert after["data"] == before["data"] and after["model"] == before["model"]
    assert after["trainer"]["max_epochs"] == 2 and after["ckpt_path"] == str(last)
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert _epochs(run) == [0, 1]
    payload = torch.load(run / "model.pt", weights_only=True)
    assert payload["config"]["num_channels"] == 8
    assert (run / ".hydra" / "overrides.yaml").read_text() == overrides


@pytest.mark.parametrize("change, key", [("data.path=other.extxyz", "data.path"),
                                         ("model.num_channels=16", "model.num_channels"),
                                         ("model=invariant", "model")])
def test_resume_refuses_another_experiment(capsys, trained_run, tmp_path, change, key):
    from molsym.cli.train import main

    last = trained_run / "checkpoints" / "last.ckpt"
    assert main([f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'r'}", change]) == 2
    assert key in _error_line(capsys)


def test_ckpt_path_that_is_no_lightning_checkpoint_is_one_line(capsys, trained_run, tmp_path):
    from molsym.cli.train import main

    class Payload:  # pickled code: never run by a resume
        def __reduce__(self):
            return (print, ("unsafe",))

    files = {"model.pt": trained_run / "model.pt", "text": tmp_path / "notes.ckpt",
             "dict": tmp_path / "dict.ckpt", "code": tmp_path / "code.ckpt"}
    files["text"].write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, files["dict"])
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2", "x": Payload()},
               files["code"])
    for what, path in files.items():
        assert main([f"ckpt_path={path}", f"hydra.run.dir={tmp_path / what}"]) == 2, what
        line = _error_line(capsys)
        assert "ckpt_path" in line and "unsafe" not in line
        if what == "model.pt":
            assert "deploy file" in line


def test_checkpoint_of_another_model_without_config_is_one_line(capsys, trained_run, emt_xyz,
                                                                  tmp_path):
    from molsym.cli.train import main

    lone = tmp_path / "lone.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", lone)
    args = tiny_args(emt_xyz, tmp_path / "run", "model.num_channels=16", f"ckpt_path={lone}")
    assert main(args) == 2
    assert "another model" in _error_line(capsys)


def test_fresh_run_never_overwrites_another_experiment(capsys, trained_run, tmp_path):
    from molsym.cli.train import main

    run = tmp_path / "res"
    shutil.copytree(trained_run, run)
    model = (run / "model.pt").read_bytes()
    other = write_emt_frames(tmp_path / "other.extxyz", n=40, seed=3)
    assert main(tiny_args(other, run)) == 2
    assert "another run" in _error_line(capsys)
    assert (run / "model.pt").read_bytes() == model
