"""Inference speed of the flagship: eager vs torch.compile vs the exported force graph.

Energy and forces of a batch of rMD17 aspirin frames (ethanol when aspirin is not found), for
    eager        the Python model, forces by autograd
    compile      torch.compile(model)
    export       the exported program (molsym.deploy.export; forces in the graph), run eagerly
    export+compile  torch.compile of that graph (what AOTInductor compiles ahead of time)
Prints a table (median ms per batch, speed-up over eager, max force deviation from eager) and
writes JSON with --out.

    python -m scripts.benchmarks.bench_compile --device cuda --frames 32 --out bench_compile.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from molsym.data.graph import atoms_to_graph
from molsym.deploy.export import INPUT_NAMES, trace_potential
from molsym.models import MODEL_CLASSES
from scripts.benchmarks.common import DATA
from scripts.benchmarks.common import REPO as ROOT


def find_frames(path: str | None, n: int) -> tuple[str, list]:
    """(name, ase.Atoms list) of ``n`` rMD17 frames: --data, else aspirin, else ethanol."""
    import ase

    roots = [os.environ.get("MOLSYM_DATA_ROOT", ""), ROOT / "data", DATA]
    candidates = [Path(path)] if path else [
        Path(r) / sub / f"rmd17_{mol}_test_01.npz"
        for mol in ("aspirin", "ethanol") for r in roots if str(r)
        for sub in ("rmd17", f"rmd17_{mol}")
    ]
    for cand in candidates:
        if cand.is_file():
            data = np.load(cand)
            frames = [ase.Atoms(numbers=data["nuclear_charges"], positions=data["coords"][i])
                      for i in range(0, 10 * n, 10)]
            return cand.stem, frames
    raise SystemExit(f"no rMD17 file found (tried {[str(c) for c in candidates]})")


def time_it(fn, device: torch.device, warmup: int, repeat: int) -> tuple[list, list]:
    """Wall-clock and CPU (this process, all threads) milliseconds of each call."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", type=int, default=16, help="molecules per batch")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--data", default=None, help="rMD17 npz (default: aspirin test_01)")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    name, frames = find_frames(args.data, args.frames)
    model = MODEL_CLASSES["equivariant"](elements=[1, 6, 7, 8]).to(device, dtype).eval()
    from torch_geometric.data import Batch

    batch = Batch.from_data_list([atoms_to_graph(a, model.cutoff, dtype=dtype) for a in frames])
    inputs = tuple(batch[k].to(device) for k in INPUT_NAMES)
    z, pos, edge_index, b, cell, shifts = inputs

    def eager_call(m):
        return lambda: m(z, pos, edge_index, b, cell.shape[0], cell=cell, cell_shifts=shifts)

    graph = trace_potential(model, inputs)
    variants = {
        "eager": eager_call(model),
        "compile": eager_call(torch.compile(model)),
        "export": lambda: graph(*inputs),
        "export+compile": (lambda g: lambda: g(*inputs))(torch.compile(graph)),
    }
    reference = variants["eager"]()["forces"].detach()
    rows = {}
    for label, fn in variants.items():
        t0 = time.perf_counter()
        forces = fn()["forces"].detach()  # first call: compilation
        first = time.perf_counter() - t0
        wall, cpu = time_it(fn, device, warmup=3, repeat=args.repeat)
        rows[label] = {"median_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu),
                       "first_call_s": first,
                       "max_force_dev": float((forces - reference).abs().max())}
    base = rows["eager"]["median_ms"]
    result = {
        "data": name, "frames": len(frames), "atoms": int(z.numel()),
        "edges": int(edge_index.shape[1]), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "dtype": args.dtype, "torch": torch.__version__,
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"), "model": model.config(), "results": rows,
    }
    print(f"{name}: {len(frames)} frames, {z.numel()} atoms, {edge_index.shape[1]} edges, "
          f"{device} ({result['device_name']}), {args.dtype}, torch {torch.__version__}")
    print(f"{'variant':<16}{'median ms':>10}{'speed-up':>10}{'CPU ms':>9}{'first call s':>14}"
          f"{'max |dF|':>11}")
    for label, r in rows.items():
        print(f"{label:<16}{r['median_ms']:>10.2f}{base / r['median_ms']:>10.2f}"
              f"{r['cpu_ms']:>9.1f}{r['first_call_s']:>14.1f}{r['max_force_dev']:>11.1e}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
