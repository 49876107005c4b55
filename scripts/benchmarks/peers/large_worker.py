"""One large-system case of ``scripts/benchmarks/bench_large.py``, in the model's own venv.

Reads the structure written by the driver (``.npz``: z, pos, cell (3, 3), edge_index (2, E)
with row 0 the centre i, cell_shifts (E, 3) integer, avg_num_neighbors, elements), builds the
model (molsym, mace-torch or nequip, the sizes of bench_model), runs one untimed step (the
compile, for compiled modes) and ``--repeats`` timed steps of inference (energy + forces) or
training (energy + forces, MSE loss, backward, Adam), and prints one JSON line prefixed by
``@@BENCH``: seconds per step (median), first step (wall and CPU seconds: the CPU time of
a step holds under load, its wall time does not), resident memory before the first step and
the peak (MiB). Edge vector convention of every model: ``pos[j] - pos[i] + shift @ cell``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from scripts.benchmarks.peers._common import MARK, maxrss_mb, rss_mb

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _opts(args: argparse.Namespace) -> dict[str, Any]:
    return {"cutoff": args.cutoff, "num_channels": 32, "l_max": 1, "num_layers": 2}


def molsym_case(d, args, dtype):
    from torch_geometric.data import Data

    from molsym.models import EquivariantModel, predict_batch
    from molsym.models.compiled import compile_model

    model = EquivariantModel(cutoff=args.cutoff, elements=[int(z) for z in d["elements"]],
                             num_channels=32, l_max=1, num_layers=2,
                             avg_num_neighbors=float(d["avg_num_neighbors"])).to(dtype)
    n = len(d["z"])
    data = Data(z=torch.as_tensor(d["z"]), pos=torch.as_tensor(d["pos"], dtype=dtype),
                edge_index=torch.as_tensor(d["edge_index"]),
                cell_shifts=torch.as_tensor(d["cell_shifts"], dtype=dtype),
                cell=torch.as_tensor(d["cell"], dtype=dtype).unsqueeze(0),
                pbc=torch.ones(1, 3, dtype=torch.bool), num_nodes=n)
    forward = compile_model(model) if args.mode == "compiled" else model
    label = ("compile_model; graphs above chunk_above edges run eager, chunked"
             if args.mode == "compiled" else "eager")
    if model.chunks_edges(int(data.edge_index.shape[1])):
        label += f" (edge chunks of {model.edge_chunk})"

    def step(training: bool):
        data.pos = torch.as_tensor(d["pos"], dtype=dtype)
        out = predict_batch(forward, data, compute_forces=True)
        return out["energy"], out["forces"]

    return model, step, label, {"molsym": _version("molsym")}


def mace_case(d, args, dtype):
    from scripts.benchmarks.peers.mace_worker import MaceAdapter

    graphs = SimpleNamespace(elements=[int(z) for z in d["elements"]],
                             avg_num_neighbors=float(d["avg_num_neighbors"]))
    if args.mode == "compiled":
        return None
    adapter = MaceAdapter(graphs, _opts(args))
    model = adapter.model.to(dtype)
    cell = torch.as_tensor(d["cell"], dtype=dtype)
    unit = torch.as_tensor(d["cell_shifts"], dtype=dtype)
    n = len(d["z"])
    base = {
        "node_attrs": torch.nn.functional.one_hot(adapter.table[torch.as_tensor(d["z"])],
                                                  len(graphs.elements)).to(dtype),
        "edge_index": torch.as_tensor(d["edge_index"]), "unit_shifts": unit,
        "shifts": unit @ cell, "cell": cell, "batch": torch.zeros(n, dtype=torch.long),
        "ptr": torch.tensor([0, n]), "weight": torch.ones(1, dtype=dtype),
        "energy_weight": torch.ones(1, dtype=dtype), "forces_weight": torch.ones(1, dtype=dtype),
        "head": torch.zeros(1, dtype=torch.long), "num_atoms": torch.tensor([n]),
    }

    def step(training: bool):
        data = dict(base, positions=torch.as_tensor(d["pos"], dtype=dtype))
        out = model(data, training=training, compute_force=True)
        return out["energy"], out["forces"]

    return model, step, "eager", adapter.versions()


def nequip_case(d, args, dtype):
    from scripts.benchmarks.peers.nequip_worker import NequipAdapter

    graphs = SimpleNamespace(elements=[int(z) for z in d["elements"]],
                             avg_num_neighbors=float(d["avg_num_neighbors"]))
    adapter = NequipAdapter(graphs, _opts(args))
    adapter.kwargs["model_dtype"] = "float32" if dtype == torch.float32 else "float64"
    model = adapter._build("compile" if args.mode == "compiled" else "eager")
    model.train(args.task == "train")
    n = len(d["z"])
    base = {"atom_types": adapter.table[torch.as_tensor(d["z"])],
            "edge_index": torch.as_tensor(d["edge_index"]),
            "edge_cell_shift": torch.as_tensor(d["cell_shifts"], dtype=dtype),
            "cell": torch.as_tensor(d["cell"], dtype=dtype).unsqueeze(0),
            "batch": torch.zeros(n, dtype=torch.long), "num_atoms": torch.tensor([n])}

    def step(training: bool):
        out = model(dict(base, pos=torch.as_tensor(d["pos"], dtype=dtype)))
        return out["total_energy"].view(-1), out["forces"]

    label = "nequip compile_mode='compile'" if args.mode == "compiled" else "eager"
    return model, step, label, adapter.versions()


CASES = {"molsym": molsym_case, "mace": mace_case, "nequip": nequip_case}


def _version(module: str) -> str:
    try:
        return getattr(__import__(module), "__version__", "?")
    except ImportError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--structure", required=True)
    p.add_argument("--model", choices=sorted(CASES), required=True)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--mode", choices=("eager", "compiled"), default="eager")
    p.add_argument("--task", choices=("infer", "train"), default="infer")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    d = dict(np.load(args.structure))
    reply: dict[str, Any] = {"model": args.model, "dtype": args.dtype, "mode": args.mode,
                             "task": args.task, "atoms": int(len(d["z"])),
                             "edges": int(d["edge_index"].shape[1])}
    built = CASES[args.model](d, args, dtype)
    if built is None:
        print(MARK + json.dumps(dict(reply, unsupported=True)), flush=True)
        return
    model, step, label, versions = built
    training = args.task == "train"
    model.train(training)
    params = [q for q in model.parameters() if q.is_floating_point()]
    for q in params:
        q.requires_grad_(training)
    opt = torch.optim.Adam(params, lr=1e-3) if training else None

    def run_step() -> None:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        energy, forces = step(training)
        if opt is not None:
            loss = (energy**2).mean() + (forces**2).mean()
            loss.backward()
            opt.step()

    rss0 = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    run_step()
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        run_step()
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times) if times else first
    reply.update(label=label, versions=versions, threads=torch.get_num_threads(),
                 first_step_s=first, step_s=seconds, us_per_atom=1e6 * seconds / reply["atoms"],
                 rss_before_mb=rss0, peak_rss_mb=maxrss_mb(),
                 step_peak_mb=maxrss_mb() - rss0, first_step_cpu_s=first_cpu,
                 cpu_s=time.process_time())
    print(MARK + json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
