"""summary.csv of a sweep from what its jobs left on disk (the 2-job CLI sweep is in
tests/cli/test_train.py)."""

import csv
import json

from molsym.training.sweep import write_summary


def _job(root, name, overrides, metrics=None):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
        (job / "model.pt").write_bytes(b"")


def test_failed_job_gets_a_row_and_jobs_sort_numerically(tmp_path):
    metrics = {"forces": {"mae": 20.5, "rmse": 30.0, "unit": "meV/Angstrom"}}
    for n in (0, 1, 10):
        _job(tmp_path, str(n), ["data.path=x.extxyz", f"seed={n}"], metrics if n != 1 else None)
    path = write_summary(tmp_path)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["seed"], r["status"]) for r in rows] == [
        ("0", "0", "ok"), ("1", "1", "failed"), ("10", "10", "ok")]
    assert "data.path" not in rows[0]  # the same in every job: only in `overrides`
    assert rows[0]["test_forces_mae_meV_per_Angstrom"] == "20.5"
    assert rows[1]["test_forces_mae_meV_per_Angstrom"] == ""
    assert not list(tmp_path.glob("*.tmp"))


def test_empty_sweep_writes_nothing(tmp_path):
    assert write_summary(tmp_path) is None
