"""Shared helpers for the benchmark studies in scripts/benchmarks/.

Every study script runs its trainings through the real ``molsym`` CLI (and the peers' own
CLIs), stores its measured numbers as JSON under ``scripts/benchmarks/results/``, draws a PNG
into ``docs/img/`` and rewrites only its own ``## <section>`` of ``docs/benchmarks.md``.
Run directories go to ``runs/benchmarks/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: The shared data folder: $MOLSYM_BENCH_DATA, else ../shared/data next to the checkout.
DATA = Path(os.environ.get("MOLSYM_BENCH_DATA", REPO.parent / "shared" / "data"))
RUNS = Path(os.environ.get("MOLSYM_BENCH_RUNS", REPO / "runs" / "benchmarks"))
RESULTS = REPO / "scripts" / "benchmarks" / "results"
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"
PEERS = REPO / "peers"
MOLSYM = Path(sys.executable).with_name("molsym")

#: train.yaml lists ``_self_`` after ``experiment``, so its own values (loss weights, targets,
#: early-stopping patience) override the experiment files; these restate the experiments'
#: values explicitly (see the Accuracy section of docs/benchmarks.md).
EXPERIMENT_OVERRIDES = {
    # the loss (Huber, E:F 100:1000) and rate (0.01) are experiment=rmd17's own since
    # 2026-12-07; the runs before had MSE with module.loss.weights.forces=100 here, lr 0.005
    "rmd17": ["callbacks.early_stopping.patience=100"],
    "3bpa": ["module.loss.weights.forces=100"],
}

SUMMARY_BEGIN = "<!-- benchmarks-summary:begin -->"
SUMMARY_END = "<!-- benchmarks-summary:end -->"


def now() -> str:
    """UTC time stamp, minutes resolution."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _version(python: Path, module: str) -> str | None:
    if not python.exists():
        return None
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return res.stdout.strip() or None


def run_threads() -> int | str:
    """Torch threads of each training run the studies start: ``num_threads`` of molsym's
    train.yaml for ``molsym train``, OMP_NUM_THREADS (1 unless set, :func:`run_logged`) for the
    peers; one number when they agree."""
    import yaml

    molsym = int(yaml.safe_load((REPO / "molsym/configs/train.yaml").read_text())["num_threads"])
    peers = int(os.environ.get("OMP_NUM_THREADS", "1"))
    return molsym if molsym == peers else f"molsym {molsym}, peers {peers}"


def environment(peers: tuple[str, ...] = (), threads: int | str | None = None) -> dict[str, Any]:
    """Machine, load and software versions (molsym git commit, torch, peers' packages).

    ``threads``: threads per run; default :func:`run_threads` (studies that train in
    subprocesses), in-process studies pass their own ``torch.get_num_threads()``."""
    import torch

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    env: dict[str, Any] = {
        "date": now(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "molsym_commit": commit,
        "threads": run_threads() if threads is None else threads,
    }
    for peer, module in (("mace", "mace-torch"), ("nequip", "nequip"),
                         ("schnetpack", "schnetpack")):
        if peer in peers:
            env[module] = _version(PEERS / peer / "bin" / "python", module)
    return env


def env_line(env: dict[str, Any]) -> str:
    """One markdown line naming date, machine and versions."""
    extra = ", ".join(f"{k} {v}" for k, v in env.items()
                      if k in ("mace-torch", "nequip", "schnetpack") and v)
    text = (f"Run {env['date']} on {env['machine']} ({env['cpus']} cores shared with other "
            f"jobs, 1-min load {env['load_avg_1min']} at the start; {env['threads']} thread(s) "
            f"per run); Python {env['python']}, torch {env['torch']}, molsym "
            f"{env['molsym_commit']}")
    return text + (f", {extra}." if extra else ".")


def _result_path(name: str) -> Path:
    """``--quick`` results (names ending in ``_quick``) stay in the git-ignored run folder."""
    return (RUNS / "quick" if name.endswith("_quick") else RESULTS) / f"{name}.json"


def img_path(stem: str, quick: bool) -> Path:
    """Where a study's plot goes: docs/img/<stem>.png, or the run folder for --quick."""
    folder = RUNS / "quick" if quick else IMG
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}.png"


def portable(value: Any) -> Any:
    """``value`` with this machine's paths written relative to the repository (commands a
    user can run from a checkout: ``runs/...``, ``../shared/data/...``), recursively."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str):
        for prefix, shown in ((f"{DATA}", "../shared/data"), (f"{REPO}/", "")):
            value = value.replace(prefix, shown)
        return value
    return value


def save_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``scripts/benchmarks/results/<name>.json`` (quick runs: under runs/)."""
    path = _result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(data), indent=2) + "\n")
    return path


def load_result(name: str) -> dict[str, Any] | None:
    """The stored result of a study, or None when it has not been run."""
    path = _result_path(name)
    return json.loads(path.read_text()) if path.is_file() else None


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; floats with 3 significant digits, None as an en dash."""
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _doc_text() -> str:
    if DOC.is_file():
        return DOC.read_text()
    return ("# Benchmarks\n\n" + SUMMARY_BEGIN + "\n(not yet generated: "
            "python -m scripts.benchmarks.summary)\n" + SUMMARY_END + "\n")


def write_section(heading: str, body: str) -> None:
    """Replace (or append) the ``## heading`` section of docs/benchmarks.md with ``body``."""
    text = _doc_text()
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"## {heading}\n\n{portable(body).strip()}\n\n"
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + block)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text.rstrip("\n") + "\n")


def read_section(heading: str) -> str | None:
    """Body of the ``## heading`` section of docs/benchmarks.md, or None."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", _doc_text(), re.S | re.M)
    return match.group(1).strip() if match else None


def write_summary(body: str) -> None:
    """Replace the summary block between the markers at the top of docs/benchmarks.md."""
    text = _doc_text()
    if SUMMARY_BEGIN not in text:
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n{SUMMARY_BEGIN}\n{SUMMARY_END}\n{rest}"
    start = text.index(SUMMARY_BEGIN) + len(SUMMARY_BEGIN)
    end = text.index(SUMMARY_END)
    DOC.write_text(text[:start] + "\n" + body.strip() + "\n" + text[end:])


def module_command(python: str | Path, script: Path) -> list[str]:
    """``<python> -m scripts.benchmarks.<name>`` for a script of this tree: the scripts are
    modules of the repository's ``scripts`` package (:func:`run_logged` puts the repository
    on ``PYTHONPATH``, so a peer's own Python finds them from any folder)."""
    module = ".".join(Path(script).resolve().relative_to(REPO).with_suffix("").parts)
    return [str(python), "-m", module]


def run_logged(cmd: list[str], log: Path, timeout: float | None = None,
               env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, float]:
    """Run ``cmd`` with stdout+stderr to ``log``; returns (exit status, wall seconds).

    On timeout the process is sent SIGINT, then killed after 60 s; status 124 is returned.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p)
    start = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(2)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            status = 124
    return status, time.perf_counter() - start



def error_metrics(d_energy: Any, d_forces: Any, n_atoms: Any) -> dict[str, Any]:
    """MAE and RMSE of energy errors (eV, one per frame), per-atom energy errors and force
    component errors (eV/Angstrom, flat), in meV, meV/atom and meV/Angstrom: the metric
    definitions every peer's test errors use."""
    import numpy as np

    de, df = np.asarray(d_energy, dtype=float), np.asarray(d_forces, dtype=float).ravel()
    per_atom = de / np.asarray(n_atoms, dtype=float)

    def pair(x: Any, unit: str) -> dict[str, Any]:
        return {"mae": 1e3 * float(np.abs(x).mean()),
                "rmse": 1e3 * float(np.sqrt((x ** 2).mean())), "unit": unit}

    return {"energy": pair(de, "meV"), "energy_per_atom": pair(per_atom, "meV/atom"),
            "forces": pair(df, "meV/Angstrom")}


def predict_in_venv(python: Path, script: Path, peer: str, model: Path, frames: Path,
                    out_npz: Path, log: Path, batch_size: int = 50,
                    dtype: str = "float32") -> dict[str, Any]:
    """Energies (eV, (frames,)) and forces (eV/Angstrom, (atoms, 3)) of a peer's ``model`` on
    the frames of ``frames`` (any file ase reads), as {"energy", "forces"} numpy arrays.

    Runs ``<python> -m <script's module> predict <model> <frames> <out_npz> <batch_size>
    <dtype>`` in the peer's own venv (``dtype``: float32 or float64, the model's precision)
    and reads ``out_npz``, which it writes afresh."""
    import numpy as np

    out_npz.unlink(missing_ok=True)
    cmd = [*module_command(python, script), "predict", str(model), str(frames), str(out_npz),
           str(batch_size), dtype]
    status, _ = run_logged(cmd, log)
    if status != 0 or not out_npz.is_file():
        raise RuntimeError(f"{peer} prediction failed (status {status}), see {log}")
    with np.load(out_npz) as pred:
        return {"energy": pred["energy"], "forces": pred["forces"]}


def evaluate_in_venv(python: Path, script: Path, peer: str, model: Path, test_xyz: Path,
                     out_npz: Path, log: Path, batch_size: int = 50) -> dict[str, Any]:
    """Test errors (:func:`error_metrics`) of a peer's trained ``model`` on labelled extxyz
    (``REF_energy`` eV, ``REF_forces`` eV/Angstrom), float32. The predictions come from
    :func:`predict_in_venv` and are kept in ``out_npz`` (reused when it exists)."""
    import ase.io
    import numpy as np

    if out_npz.is_file():
        with np.load(out_npz) as f:
            pred = {"energy": f["energy"], "forces": f["forces"]}
    else:
        pred = predict_in_venv(python, script, peer, model, test_xyz, out_npz, log, batch_size)
    ref = ase.io.read(test_xyz, ":")
    de = pred["energy"].astype(float) - np.array([r.info["REF_energy"] for r in ref])
    df = pred["forces"] - np.concatenate([r.arrays["REF_forces"] for r in ref])
    return error_metrics(de, df, [len(r) for r in ref])


def minutes(seconds: float) -> str:
    """Lightning ``max_time`` string DD:HH:MM:SS for a number of seconds."""
    s = int(round(seconds))
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def molsym_train(run_dir: Path, overrides: list[str], budget_s: float | None,
                 log: Path, train: bool = True) -> dict[str, Any]:
    """``molsym train <overrides> hydra.run.dir=run_dir`` with ``trainer.max_time=budget_s``.

    Returns {"metrics": test metrics JSON, "wall_s", "status", "epochs", "model", "command"}.
    Reuses a finished run in ``run_dir`` (its metrics.json) instead of training again; with
    ``train=False`` it only collects what is there.
    """
    args = list(overrides) + [f"hydra.run.dir={run_dir}"]
    if budget_s is not None:
        args.append(f"trainer.max_time={minutes(budget_s)}")
    cmd = [str(MOLSYM), "train", *args]
    metrics_path = run_dir / "metrics.json"
    status, wall = 0, None
    if not metrics_path.is_file() and train:
        status, wall = run_logged(cmd, log)
    result: dict[str, Any] = {"command": "molsym train " + shlex.join(args), "status": status,
                              "wall_s": None if wall is None else round(wall, 1),
                              "model": str(run_dir / "model.pt")}
    if metrics_path.is_file():
        result["metrics"] = json.loads(metrics_path.read_text())
        result["epochs"] = last_epoch(run_dir / "logs" / "metrics.csv")
        result["steps"] = steps_done(run_dir / "logs" / "metrics.csv")
        result["mean_load"] = run_load(run_dir)
        config = run_dir / "config.yaml"
        if result["wall_s"] is None and config.is_file():  # a collected run: from file times
            result["wall_s"] = round(metrics_path.stat().st_mtime - config.stat().st_mtime, 1)
            result["wall_s_from_files"] = True
    return result


def mean_load(start: float, end: float) -> float | None:
    """Mean 1-min load average between two UNIX times, from ``RUNS/load.log`` (a sampler that
    writes ``<time> <load>`` every 30 s while the studies run); None without samples."""
    path = RUNS / "load.log"
    if not path.is_file():
        return None
    vals = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and start <= float(parts[0]) <= end:
            vals.append(float(parts[1]))
    return round(sum(vals) / len(vals), 1) if vals else None


def run_load(run_dir: Path, first: str = "config.yaml", last: str = "metrics.json"
             ) -> float | None:
    """Mean machine load while the run in ``run_dir`` trained (file times ``first``..``last``)."""
    a, b = run_dir / first, run_dir / last
    if not (a.exists() and b.exists()):
        return None
    return mean_load(a.stat().st_mtime, b.stat().st_mtime)


def run_settings(run_dir: Path) -> str | None:
    """Loss weights (energy:forces) and LR scheduler of a molsym run, from its config.yaml
    (molsym's defaults changed while these studies ran, so each run states its own)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    import yaml

    cfg = yaml.safe_load(path.read_text())
    w = cfg["module"]["loss"]["weights"]
    sched = cfg.get("scheduler", {}).get("_target_", "?").rsplit(".", 1)[-1]
    return f"E:F {w.get('energy'):g}:{w.get('forces'):g}, {sched}"


def steps_done(csv_path: Path) -> int | None:
    """Optimizer steps in a Lightning CSV log (largest ``step`` + 1)."""
    if not csv_path.is_file():
        return None
    import csv

    with open(csv_path) as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh) if r.get("step")]
    return max(steps) + 1 if steps else None


def last_epoch(csv_path: Path) -> int | None:
    """Number of finished epochs in a Lightning CSV log (max epoch index + 1)."""
    if not csv_path.is_file():
        return None
    import csv

    with open(csv_path) as fh:
        epochs = [int(r["epoch"]) for r in csv.DictReader(fh) if r.get("epoch")]
    return max(epochs) + 1 if epochs else None


def epochs_to_best(csv_path: Path, monitor: str) -> int | None:
    """Epochs up to the lowest ``monitor`` value in a Lightning CSV log (best epoch + 1)."""
    if not csv_path.is_file():
        return None
    import csv

    with open(csv_path) as fh:
        val = [(float(r[monitor]), int(r["epoch"])) for r in csv.DictReader(fh) if r.get(monitor)]
    return min(val)[1] + 1 if val else None
