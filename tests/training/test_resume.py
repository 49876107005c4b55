"""molsym.training.resume without a training run: config comparison, metrics history."""

import csv

from omegaconf import OmegaConf

from molsym.training.resume import _HistoryWriter, config_differences


def test_config_differences_skip_resumable_and_version_drift():
    a = OmegaConf.create({"data": {"path": "a.xyz", "on_error": "raise"}, "seed": 0,
                          "trainer": {"max_epochs": 5}})
    b = OmegaConf.create({"data": {"path": "b.xyz"}, "seed": 0, "trainer": {"max_epochs": 9}})
    assert config_differences(a, b) == [("data.path", "a.xyz", "b.xyz")]
    assert config_differences(a, b, only=["seed"]) == []
    assert config_differences(a, b, only=["data"]) == [("data.on_error", "raise", None),
                                                       ("data.path", "a.xyz", "b.xyz")]


def test_history_writer_keeps_epochs_before_the_resumed_one(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    rows = [{"epoch": "0", "step": "3", "val/loss": "2.0"},
            {"epoch": "1", "step": "6", "val/loss": "1.5"},
            {"epoch": "2", "step": "9", "val/loss": "1.2"}]  # after the checkpoint: redone
    with open(log_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", "val/loss"])
        writer.writeheader()
        writer.writerows(rows)
    writer = _HistoryWriter(str(log_dir))
    writer.log_metrics({"epoch": 2, "val/loss": 1.1, "lr": 0.1}, step=9)
    writer.save()
    writer.log_metrics({"epoch": 3, "val/loss": 1.0}, step=12)
    writer.save()
    with open(log_dir / "metrics.csv", newline="") as f:
        got = [(r["epoch"], r["val/loss"], r["lr"]) for r in csv.DictReader(f)]
    assert got == [("0", "2.0", ""), ("1", "1.5", ""), ("2", "1.1", "0.1"), ("3", "1.0", "")]
