"""The long-run record (scripts/benchmarks/long_run.py): the best validation epoch, the curve
at its milestones and the test errors come from the run folder's own files, and the summary
row says whether issue 19's target is met."""

from __future__ import annotations

import json

import pytest

from scripts.benchmarks import long_run, summary


def _run_folder(tmp_path, val_by_epoch, test_forces):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text(
        "module:\n  loss:\n    weights: {energy: 100.0, forces: 1000.0}\n"
        "scheduler:\n  _target_: molsym.training.WarmupCosineLR\n")
    lines = ["epoch,lr-Adam,step,train/loss," + long_run.VAL_FORCES, ",0.01,0,,"]
    for epoch, val in val_by_epoch.items():  # Lightning: a train row, then a validation row
        lines += [f"{epoch},,{190 * epoch + 189},0.5,", f"{epoch},,{190 * epoch + 189},,{val}"]
    (run / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")
    metrics = {"energy": {"mae": 4.0, "rmse": 5.0, "unit": "meV"},
               "forces": {"mae": test_forces, "rmse": 1.5 * test_forces,
                          "unit": "meV/Angstrom"}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_record_reads_the_best_epoch_the_milestones_and_the_test_errors(tmp_path):
    curve = {e: 30.0 - 0.01 * e for e in range(0, 700)}
    curve[650] = 12.0  # the best, not the last
    run = _run_folder(tmp_path, curve, 11.5)
    record = long_run.summarise(run, "molsym train ...")
    assert record["epochs"] == 700 and record["steps"] == 190 * 700
    assert (record["best_val_epoch"], record["best_val_forces_mae"]) == (650, 12.0)
    assert record["val_forces_mae_at"][100] == 29.0 and 800 not in record["val_forces_mae_at"]
    assert record["test"]["forces"]["mae"] == 11.5
    assert record["settings"] == "E:F 100:1000, WarmupCosineLR"
    assert "11.50" in long_run.report({"runs": {"r": record}})


def test_summary_row_says_whether_the_target_is_met(tmp_path, monkeypatch):
    records = {}
    for forces in (12.3, 8.7):
        run = _run_folder(tmp_path / str(forces), {0: 20.0, 1: 15.0}, forces)
        records[str(forces)] = long_run.summarise(run, "cmd")
    monkeypatch.setattr(summary.common, "load_result",
                        lambda name: {"runs": records} if name == "long_run" else None)
    rows = summary.long_run_rows()
    assert [r[1] for r in rows] == ["12.3", "8.7"]
    assert "missed" in rows[0][4] and "met" in rows[1][4] and "missed" not in rows[1][4]


def test_a_continued_run_carries_the_totals_of_its_chain(tmp_path, monkeypatch):
    first = long_run.summarise(_run_folder(tmp_path / "a", {0: 20.0, 399: 12.6}, 11.6), "cmd a")
    second = long_run.summarise(_run_folder(tmp_path / "b", {0: 13.0, 599: 11.0}, 10.2),
                                "cmd b", earlier=first)
    assert second["continues"] == first["run_dir"]
    assert second["total_epochs"] == 400 + 600
    assert second["total_wall_s"] == first["wall_s"] + second["wall_s"]
    third = long_run.summarise(_run_folder(tmp_path / "c", {0: 11.0, 99: 10.0}, 9.5), "c",
                               earlier=second)
    assert third["total_epochs"] == 1100  # the whole chain, not the last link
    monkeypatch.setattr(summary.common, "load_result",
                        lambda name: {"runs": {"b": second}} if name == "long_run" else None)
    (row,) = summary.long_run_rows()
    assert "1000 epochs" in row[4] and "on from an earlier run" in row[0]
    assert f"with {first['run_dir']}" in long_run.report({"runs": {"b": second}})


def test_continuing_an_unrecorded_run_is_a_usage_error(tmp_path, monkeypatch, capsys):
    run = _run_folder(tmp_path, {0: 20.0}, 11.0)
    monkeypatch.setattr(long_run.common, "load_result", lambda name: {"runs": {}})
    monkeypatch.setattr(long_run.common, "save_result", lambda *a: pytest.fail("saved"))
    with pytest.raises(SystemExit) as exit_info:
        long_run.main([str(run), "--command", "c", "--continues", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "no recorded run" in capsys.readouterr().err
