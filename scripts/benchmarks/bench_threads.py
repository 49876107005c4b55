"""Threads of ``molsym train`` alone and next to busy processes (issue 23 §2).

The same compiled ``molsym train`` as ``bench_train`` (aspirin 950/50, bench_model's model
size, batch 5), for each setting of torch threads (``num_threads``) and ``OMP_WAIT_POLICY``,
once on an otherwise idle machine and once next to ``--busy`` processes that each spin one
core (``while True: pass``), as a shared node or a laptop would have. Throughput: training
frames per second over the epochs after the first, from the epoch clock (see
:func:`scripts.benchmarks.bench_train.throughput`). All runs share one Inductor cache,
warmed by an untimed run first, so the first epoch is short and every run times the same
kernels.

    python -m scripts.benchmarks.bench_threads               # 1, 2 and 2-PASSIVE threads
    python -m scripts.benchmarks.bench_threads --epochs 6 --busy 1

Writes scripts/benchmarks/results/train_threads.json and prints one line per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.benchmarks import common
from scripts.benchmarks.bench_train import (
    epoch_bounds,
    model_size,
    molsym_overrides,
    run_molsym,
    throughput,
)

SETTINGS = ("1", "2", "2:PASSIVE")  # threads[:OMP_WAIT_POLICY]
SPIN = "while True: pass"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help="comma list of THREADS[:OMP_WAIT_POLICY]")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the first untimed)")
    p.add_argument("--busy", type=int, default=1, help="spinning processes beside each run")
    p.add_argument("--repeats", type=int, default=1, help="runs per setting and condition")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--out", default=str(common.RESULTS / "train_threads.json"))
    return p.parse_args(argv)


@contextmanager
def spinning(count: int):
    """``count`` processes that each keep one core busy, stopped at the end of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@contextmanager
def omp_environment(threads: int, policy: str | None):
    """OMP_NUM_THREADS (and OMP_WAIT_POLICY) for the runs of the block."""
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
    else:
        os.environ.pop("OMP_WAIT_POLICY", None)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def one_run(run_dir: Path, threads: int, epochs: int, timeout: float) -> dict[str, Any]:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    launched, load = time.time(), round(os.getloadavg()[0], 2)
    run = run_molsym(run_dir, epochs, molsym_overrides(model_size(), threads), timeout,
                     fresh_cache=False)
    res = throughput(epoch_bounds("molsym", run_dir), launched, run["wall_s"] or 0.0)
    return {**res, "status": run["status"], "wall_s": run["wall_s"], "load_before": load,
            "command": run["command"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = (common.RUNS / "bench_threads").resolve()
    cache = base / "inductor_cache"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)  # shared: warm after the first run
    start, load_start = time.perf_counter(), os.getloadavg()
    with omp_environment(1, None):
        warm = one_run(base / "warm", 1, 2, args.timeout)
    print(f"[bench_threads] warm-up: {warm['wall_s']} s (status {warm['status']})", flush=True)
    rows = []
    for setting in args.settings.split(","):
        threads_text, _, policy = setting.partition(":")
        threads = int(threads_text)
        for busy in (0, args.busy):
            for rep in range(args.repeats):
                name = f"t{threads}{'_' + policy.lower() if policy else ''}_busy{busy}_{rep}"
                with omp_environment(threads, policy or None), spinning(busy):
                    res = one_run(base / name, threads, args.epochs, args.timeout)
                row = {"threads": threads, "wait_policy": policy or "default", "busy": busy,
                       "repeat": rep, **res}
                rows.append(row)
                print(f"[bench_threads] threads={threads} policy={row['wait_policy']} "
                      f"busy={busy}: {res['conf_per_s']} conf/s ({res['epoch_s']} s/epoch, "
                      f"status {res['status']})", flush=True)
    data = {"environment": common.environment(threads="per run"), "epochs": args.epochs,
            "busy_processes": args.busy, "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()],
            "wall_s": round(time.perf_counter() - start, 1), "warm_up": warm, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(common.portable(data), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
