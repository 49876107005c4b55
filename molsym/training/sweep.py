"""``summary.csv`` of a sweep (``molsym train -m ...``): one row per job, its overrides and
test errors, written in the sweep directory when the sweep ends.

A Hydra callback (``hydra.callbacks.sweep_summary`` in ``train.yaml``). It reads what the
jobs left on disk (``<job>/.hydra/overrides.yaml``, ``<job>/metrics.json``), so it works with
any launcher, and a job that failed gets a row with ``status`` ``failed``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from molsym.atomic import write_text_atomic


def _job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit()
                                       else 0, p.name))


def _overrides(job: Path) -> list[str]:
    return [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]


def _metric_columns(metrics: dict[str, dict]) -> dict[str, float]:
    out = {}
    for target, m in metrics.items():
        unit = str(m.get("unit", "")).replace("/", "_per_")
        for stat in ("mae", "rmse"):
            if stat in m:
                out[f"test_{target}_{stat}_{unit}".rstrip("_")] = m[stat]
    return out


def summary_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per job: ``job``, one column per swept key, ``overrides``, ``status``,
    ``test_<target>_<mae|rmse>_<unit>``."""
    sweep_dir = Path(sweep_dir)
    jobs = _job_dirs(sweep_dir) if sweep_dir.is_dir() else []
    overrides = {job: _overrides(job) for job in jobs}
    values: dict[str, set[str]] = {}
    for items in overrides.values():
        for item in items:
            key, _, value = item.partition("=")
            values.setdefault(key, set()).add(value)
    swept = [k for k, v in values.items() if len(v) > 1 or len(jobs) == 1]
    rows = []
    for job in jobs:
        given = dict(item.partition("=")[::2] for item in overrides[job])
        row: dict[str, Any] = {"job": job.name}
        row.update({key: given.get(key, "") for key in swept})
        row["overrides"] = " ".join(overrides[job])
        metrics_file = job / "metrics.json"
        ok = metrics_file.is_file() and (job / "model.pt").is_file()
        row["status"] = "ok" if ok else "failed"
        if ok:
            row.update(_metric_columns(json.loads(metrics_file.read_text())))
        rows.append(row)
    return rows


def write_summary(sweep_dir: str | Path) -> Path | None:
    """Write ``<sweep_dir>/summary.csv`` atomically; None when the sweep has no job."""
    rows = summary_rows(sweep_dir)
    if not rows:
        return None
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(sweep_dir) / "summary.csv"
    write_text_atomic(path, text.getvalue())
    return path


class SweepSummary(Callback):
    """Hydra callback: ``summary.csv`` in the sweep directory, rewritten after each job (so
    a sweep that stops early leaves the rows of the jobs done) and at the end."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra")
        if hydra_cfg is not None and str(hydra_cfg.get("mode")) == "RunMode.MULTIRUN":
            write_summary(hydra_cfg.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_summary(config.hydra.sweep.dir)
        if path is not None:
            print(f"sweep summary: {path}", flush=True)
