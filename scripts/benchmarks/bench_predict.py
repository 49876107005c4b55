"""Throughput of ``molsym predict`` (molecules/s) on QM9 SMILES and on extxyz frames.

    python -m scripts.benchmarks.bench_predict --model qm9            # 10,000 QM9 SMILES
    python -m scripts.benchmarks.bench_predict --model qm9 --quick    # 500, for a smoke run

Three timings, each the wall time of the real CLI path (``molsym.cli.predict``):
1. SMILES file -> table, embedding included (RDKit ETKDG + MMFF over ``--jobs`` processes);
2. the same molecules, embedding excluded (pre-embedded structures -> graphs -> model -> table);
3. an extxyz file of the QM9 DFT geometries -> table (reading included).
Prints a Markdown block (command, machine, versions, date) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def qm9_sample(n: int, seed: int = 0):
    """``n`` random QM9 molecules (SMILES, DFT geometry) through molsym's QM9 reader."""
    from ase import Atoms

    from molsym.data.readers import read_file

    pool = np.random.default_rng(seed).permutation(133_885)[: int(n * 1.05) + 50]
    mols = read_file("qm9pack", format="qm9", indices=sorted(pool.tolist()))[:n]
    smiles = [m.info["smiles"] for m in mols]
    frames = [Atoms(numbers=m.numbers, positions=m.positions, info={"name": m.info["name"]})
              for m in mols]
    return smiles, frames


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished workers (user + system)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_main(argv: list[str]) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``molsym predict argv`` (table to a file, nothing on stdout)."""
    from molsym.cli.predict import main

    t0, c0 = time.perf_counter(), cpu_seconds()
    with contextlib.redirect_stderr(io.StringIO()):
        rc = main(argv)
    return time.perf_counter() - t0, cpu_seconds() - c0, rc


def bench(model: str, n: int, jobs: int, batch_atoms: int, device: str) -> list[tuple]:
    import ase.io

    from molsym.cli.predict import gather
    from molsym.inference.predictor import Predictor

    smiles, frames = qm9_sample(n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        smi, xyz, out = Path(tmp, "q.smi"), Path(tmp, "q.extxyz"), str(Path(tmp, "o.csv"))
        smi.write_text("\n".join(smiles) + "\n")
        ase.io.write(xyz, frames, format="extxyz")
        common = ["--model", model, "-o", out, "--jobs", str(jobs),
                  "--batch-atoms", str(batch_atoms), "--device", device, "--progress", "never"]
        Predictor(model, device=device)  # warm-up: imports and model load
        rows.append(("SMILES file, embedding included", n, *timed_main([*common, str(smi)])))
        entries = gather([str(smi)], n_jobs=jobs)
        t0, c0 = time.perf_counter(), cpu_seconds()
        predictor = Predictor(model, device=device, batch_atoms=batch_atoms)
        table = predictor.table(predictor.run(entries))
        rows.append(("same molecules, embedding excluded", n, time.perf_counter() - t0,
                      cpu_seconds() - c0, int((table["error"] != "").any())))
        rows.append(("extxyz frames (QM9 DFT geometries)", n, *timed_main([*common, str(xyz)])))
    return rows


def machine() -> str:
    import torch

    import molsym

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"torch {torch.__version__}, molsym {molsym.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qm9", help="deploy file or pretrained name")
    p.add_argument("-n", type=int, default=10_000, help="number of QM9 molecules")
    p.add_argument("--quick", action="store_true", help="500 molecules")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch-atoms", type=int, default=4096)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    n = 500 if args.quick else args.n
    load = os.getloadavg()[0]
    rows = bench(args.model, n, args.jobs, args.batch_atoms, args.device)
    print(f"`python -m scripts.benchmarks.bench_predict {' '.join(argv or sys.argv[1:])}` "
          f"({datetime.date.today().isoformat()})\n")
    print(f"Machine: {machine()}; load average at the start {load:.1f}\n")
    print("| path | molecules | wall s | molecules/s (wall) | CPU s | molecules per CPU-s "
          "| exit |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, count, dt, cpu, rc in rows:
        print(f"| {name} | {count} | {dt:.1f} | {count / dt:.0f} | {cpu:.1f} | "
              f"{count / cpu:.0f} | {rc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
