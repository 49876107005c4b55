"""Record a finished long ``molsym train`` run (issue 19, §3: aspirin 950/50, about two hours on
one CPU core): its command, epochs, the validation force MAE along the run and the test errors,
into ``results/long_run.json`` (one entry per run folder) and the summary.

The run itself is a plain ``molsym train``, started in the background, e.g.::

    nohup molsym train experiment=rmd17 data.molecule=aspirin data_root=../shared/data seed=0 \\
        callbacks.early_stopping.patience=100000 scheduler=cosine scheduler.time_budget_s=7000 \\
        trainer.max_epochs=100000 trainer.max_time=00:01:58:00 \\
        hydra.run.dir=outputs/long_aspirin > outputs/long_aspirin.log 2>&1 &
    python -m scripts.benchmarks.long_run outputs/long_aspirin --command "molsym train ..."

A run that goes on from an earlier one (``init_from=<earlier run>/model.pt`` with a schedule of
its own, or ``ckpt_path=`` in the same folder) is recorded with ``--continues <earlier run
folder>``: its record then also holds the totals of the chain (hours and epochs of both), which
the summary quotes.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from scripts.benchmarks import common

RESULT = "long_run"
VAL_FORCES = "val/forces_mae_meV_per_Angstrom"
#: epochs at which the validation force MAE is quoted (those the run reached)
MILESTONES = (50, 100, 200, 400, 600, 800, 1000, 1200)


def validation_curve(csv_path: Path) -> list[tuple[int, float]]:
    """(epoch, validation force MAE in meV/Angstrom) of every validated epoch, in order."""
    with open(csv_path) as fh:
        rows = [(int(r["epoch"]), float(r[VAL_FORCES])) for r in csv.DictReader(fh)
                if r.get(VAL_FORCES) and r.get("epoch")]
    return sorted(rows)


def summarise(run_dir: Path, command: str, earlier: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """The record of the finished run in ``run_dir`` (needs its metrics.json); ``earlier``:
    the record of the run it continues (its totals are added to this run's)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    curve = validation_curve(run_dir / "logs" / "metrics.csv")
    best_epoch, best = min(curve, key=lambda row: row[1])
    by_epoch = dict(curve)
    started = (run_dir / "config.yaml").stat().st_mtime
    ended = (run_dir / "metrics.json").stat().st_mtime
    record = {"run_dir": str(run_dir), "command": command, "epochs": curve[-1][0] + 1,
              "steps": common.steps_done(run_dir / "logs" / "metrics.csv"),
              "wall_s": round(ended - started), "mean_load": common.mean_load(started, ended),
              "best_val_forces_mae": best, "best_val_epoch": best_epoch,
              "val_forces_mae_at": {e: by_epoch[e] for e in MILESTONES if e in by_epoch},
              "test": metrics, "settings": common.run_settings(run_dir),
              "env": common.environment(threads=1)}
    if earlier is not None:
        record["continues"] = earlier["run_dir"]
        for key in ("wall_s", "epochs"):
            record[f"total_{key}"] = record[key] + earlier.get(f"total_{key}", earlier[key])
    return record


def chain_hours(run: dict[str, Any]) -> float:
    """Hours of training behind a record: its own, plus those of the runs it continues."""
    return run.get("total_wall_s", run["wall_s"]) / 3600


def report(results: dict[str, Any]) -> str:
    rows = []
    for run in results["runs"].values():
        test = run["test"]
        time = f"{run['wall_s'] / 3600:.2f} h"
        if "continues" in run:
            time += f" ({chain_hours(run):.2f} h with {run['continues']})"
        rows.append([run["command"], run["epochs"], time,
                     f"{run['best_val_forces_mae']:.2f} ({run['best_val_epoch']})",
                     f"{test['energy']['mae']:.2f}", f"{test['forces']['mae']:.2f}",
                     f"{test['forces']['rmse']:.2f}"])
    return common.md_table(["command", "epochs", "time", "best val force MAE (epoch)",
                            "test energy MAE (meV)", "test force MAE (meV/Å)",
                            "test force RMSE (meV/Å)"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True, help="the molsym train command it ran")
    parser.add_argument("--continues", type=Path, default=None,
                        help="the recorded run folder this run goes on from")
    args = parser.parse_args(argv)
    results = common.load_result(RESULT) or {"runs": {}}
    earlier = None
    if args.continues is not None:
        earlier = results["runs"].get(str(args.continues))
        if earlier is None:
            parser.error(f"--continues {args.continues}: no recorded run of that folder "
                         f"(recorded: {', '.join(results['runs']) or 'none'})")
    results["runs"][str(args.run_dir)] = summarise(args.run_dir, args.command, earlier)
    common.save_result(RESULT, results)
    print(report(common.portable(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
