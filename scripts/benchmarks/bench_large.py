"""Large systems: time per atom and peak memory of energy + forces and of one training step
on periodic water boxes and an aspirin crystal of 10^3 to 10^5 atoms, molsym against
mace-torch and nequip (the sizes of bench_model: 32 channels, l_max 1, 2 layers), the same
structures, cutoff and neighbour lists, float32 and float64, eager and compiled.

Every case runs in a fresh process (``scripts/benchmarks/peers/large_worker.py``, in the model's own
venv under ``--peer-venv-dir``), so its peak resident memory is its own; cases whose
estimated memory exceeds ``--max-gb`` are skipped and listed. Results are appended, one JSON
line per case, to ``--out``, so an interrupted run keeps what it measured; ``--report`` prints
the markdown table of such a file (time per atom, peak memory, memory per atom, and how the
cost grows from one size to the next: 1.0 = linear).

    python -m scripts.benchmarks.bench_large --quick   # 10^3 and 10^4 water, molsym only
    python -m scripts.benchmarks.bench_large --sizes 1e3,1e4,1e5 --models molsym,mace,nequip
    python -m scripts.benchmarks.bench_large --report results.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORKER = "scripts.benchmarks.peers.large_worker"
MARK = "@@BENCH "
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
#: rough bytes per edge of an unchunked evaluation (forces) of each model, float32, for
#: skipping what would not fit (measured at 10^4 atoms, docs/benchmarks.md; train x3)
EDGE_BYTES = {"molsym": 5400, "mace": 12000, "nequip": 12000}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default="water,aspirin")
    p.add_argument("--sizes", default="1e3,1e4,1e5", help="target atom counts")
    p.add_argument("--models", default="molsym,mace,nequip")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--modes", default="eager,compiled")
    p.add_argument("--tasks", default="infer,train")
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="timed steps after the first")
    p.add_argument("--max-gb", type=float, default=16.0,
                   help="skip cases estimated to need more (peers are not chunked)")
    p.add_argument("--peer-venv-dir", default=str(ROOT / "peers"))
    p.add_argument("--out", default="bench_large.jsonl")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per case")
    p.add_argument("--quick", action="store_true",
                   help="water 10^3 and 10^4, molsym float32 eager inference and training")
    p.add_argument("--report", metavar="JSONL", help="print the table of a results file")
    args = p.parse_args(argv)
    if args.quick:
        args.systems, args.sizes, args.models = "water", "1e3,1e4", "molsym"
        args.dtypes, args.modes = "float32", "eager"
    return args


def structure(system: str, target: int):
    """The periodic box of about ``target`` atoms."""
    from molsym.data.boxes import molecular_box, water_box

    if system == "water":
        return water_box(max(1, round((target / 3) ** (1 / 3))))
    if system == "aspirin":
        from molsym.inference.inputs import embed_smiles

        molecule = embed_smiles([ASPIRIN])[0].atoms
        return molecular_box(molecule, max(1, round((target / len(molecule)) ** (1 / 3))))
    raise SystemExit(f"unknown system {system!r} (water, aspirin)")


def write_structure(atoms, cutoff: float, path: Path) -> dict:
    from molsym.data.graph import neighbour_list

    t0 = time.perf_counter()
    edges, shifts, _ = neighbour_list(atoms.positions, cutoff, atoms.cell[:], atoms.pbc)
    seconds = time.perf_counter() - t0
    np.savez(path, z=atoms.numbers.astype(np.int64), pos=atoms.positions,
             cell=np.asarray(atoms.cell[:]), edge_index=edges, cell_shifts=shifts,
             avg_num_neighbors=edges.shape[1] / len(atoms),
             elements=np.unique(atoms.numbers))
    return {"atoms": len(atoms), "edges": int(edges.shape[1]), "neighbour_list_s": seconds}


def python_of(model: str, venv_dir: str) -> str | None:
    if model == "molsym":
        return sys.executable
    py = Path(venv_dir) / model / "bin" / "python"
    return str(py) if py.exists() else None


def estimated_gb(model: str, edges: int, dtype: str, task: str) -> float:
    if model == "molsym":  # chunked above 2**18 edges
        from molsym.nn.chunks import CHUNK_ABOVE, EDGE_CHUNK

        per_edge = 300 if edges > CHUNK_ABOVE else EDGE_BYTES[model]
        fixed = EDGE_CHUNK * EDGE_BYTES[model] if edges > CHUNK_ABOVE else 0
    else:
        per_edge, fixed = EDGE_BYTES[model], 0
    factor = (2 if dtype == "float64" else 1) * (3 if task == "train" else 1)
    return (edges * per_edge + fixed) * factor / 1e9 + 0.5


def run_case(py: str, npz: Path, model: str, dtype: str, mode: str, task: str,
             args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    cmd = [py, "-m", WORKER, "--structure", str(npz), "--model", model, "--dtype", dtype,
           "--mode", mode, "--task", task, "--repeats", str(args.repeats),
           "--cutoff", str(args.cutoff), "--threads", str(args.threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT),
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {args.timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"rc={proc.returncode}"]
    return {"error": f"rc={proc.returncode}: {tail[0][:300]}"}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        print(report([json.loads(x) for x in Path(args.report).read_text().splitlines()]))
        return
    out = Path(args.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems.split(","):
            for size in [int(float(s)) for s in args.sizes.split(",")]:
                npz = Path(tmp) / f"{system}_{size}.npz"
                info = write_structure(structure(system, size), args.cutoff, npz)
                for model in args.models.split(","):
                    py = python_of(model, args.peer_venv_dir)
                    for dtype in args.dtypes.split(","):
                        for mode in args.modes.split(","):
                            for task in args.tasks.split(","):
                                base = dict(system=system, model=model, dtype=dtype, mode=mode,
                                            task=task, **info)
                                gb = estimated_gb(model, info["edges"], dtype, task)
                                if py is None:
                                    row = dict(base, skipped="no venv")
                                elif gb > args.max_gb:
                                    row = dict(base, skipped=f"estimated {gb:.0f} GB")
                                else:
                                    load0 = load_average()
                                    row = dict(base, **run_case(py, npz, model, dtype, mode,
                                                                task, args))
                                    row.update(load_before=load0, load_after=load_average())
                                rows.append(row)
                                with open(out, "a") as fh:
                                    fh.write(json.dumps(row) + "\n")
                                print(json.dumps(row), flush=True)
    print(report(rows))


def report(rows: list[dict]) -> str:
    """Markdown table; ``growth``: exponent of time and of step memory from the previous size
    of the same case (log ratio over log atom ratio; 1.0 = linear)."""
    lines = ["| system | atoms | edges | model | dtype | mode | task | ms/atom | peak GB | "
             "step MB/1k atoms | CPU ms/atom (1st step) | growth t / mem | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    last: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: (r["system"], r["model"], r["dtype"], r["mode"],
                                         r["task"], r["atoms"])):
        key = (r["system"], r["model"], r["dtype"], r["mode"], r["task"])
        head = (f"| {r['system']} | {r['atoms']:,} | {r['edges']:,} | {r['model']} | "
                f"{r['dtype']} | {r['mode']} | {r['task']} |")
        why = r.get("skipped") or r.get("error") or ("unsupported" if r.get("unsupported")
                                                    else None)
        if why:
            lines.append(f"{head} {why} | | | | | |")
            continue
        growth = ""
        prev = last.get(key)
        if prev and prev["atoms"] != r["atoms"]:
            ratio = math.log(r["atoms"] / prev["atoms"])
            memory = max(r["step_peak_mb"], 1) / max(prev["step_peak_mb"], 1)
            growth = (f"{math.log(r['step_s'] / prev['step_s']) / ratio:.2f} / "
                      f"{math.log(memory) / ratio:.2f}")
        last[key] = r
        lines.append(f"{head} {r['us_per_atom'] / 1000:.2f} | {r['peak_rss_mb'] / 1024:.2f} | "
                     f"{1000 * r['step_peak_mb'] / r['atoms']:.0f} | "
                     f"{1000 * r.get('first_step_cpu_s', math.nan) / r['atoms']:.2f} | {growth} | "
                     f"{r.get('load_before', '')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
