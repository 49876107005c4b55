"""Timing harness shared by every model worker of ``scripts/benchmarks/bench_model.py``.

Imports only the standard library, numpy and torch, so that each peer's own virtual
environment (mace-torch, nequip) can load it. A worker is a long-lived subprocess: it reads the
precomputed graphs written by ``bench_model.py``, builds its model once, then answers one JSON
command per stdin line (``{"mode": "train", "min_time": 3, ...}``) with one JSON reply line
prefixed by :data:`MARK` on stdout; anything else a library prints is ignored. Keeping the
worker alive lets the driver interleave models (round-robin) and compile each model only once.

Units: Angstrom, eV, eV/Angstrom. The neighbour lists and the batches are built before any
timing (same edges for every model); only the model step is timed. With ``--device cuda`` the
model and the prepared batches live on the GPU, every timed step is bracketed by
``torch.cuda.synchronize`` and peak memory is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MARK = "@@BENCH "


@dataclass
class Graphs:
    """Concatenated graphs: ``z (N,)``, ``pos (N,3)``, ``forces (N,3)``, ``energy (C,)``,
    ``n_atoms (C,)``, ``edge_index (2,E)`` (per-graph local indices, row 0 centre i, row 1
    neighbour j, both directions), ``n_edges (C,)``; ``avg_num_neighbors`` over the set."""

    z: np.ndarray
    pos: np.ndarray
    forces: np.ndarray
    energy: np.ndarray
    n_atoms: np.ndarray
    edge_index: np.ndarray
    n_edges: np.ndarray
    avg_num_neighbors: float
    elements: list[int]

    def batches(self, batch_size: int) -> list[dict[str, Any]]:
        """Consecutive groups of ``batch_size`` graphs as plain tensors (float32 positions):
        ``z, pos, forces, energy (B,), batch (N,), edge_index (2,E) (global), num_graphs``."""
        atom_off = np.concatenate([[0], np.cumsum(self.n_atoms)])
        edge_off = np.concatenate([[0], np.cumsum(self.n_edges)])
        out = []
        for start in range(0, len(self.n_atoms) - batch_size + 1, batch_size):
            ids = range(start, start + batch_size)
            a0, a1 = atom_off[start], atom_off[start + batch_size]
            edges, batch = [], []
            for k, c in enumerate(ids):
                e = self.edge_index[:, edge_off[c] : edge_off[c + 1]]
                edges.append(e + (atom_off[c] - a0))
                batch.append(np.full(self.n_atoms[c], k))
            out.append(
                {
                    "z": torch.as_tensor(self.z[a0:a1], dtype=torch.long),
                    "pos": torch.as_tensor(self.pos[a0:a1], dtype=torch.float32),
                    "forces": torch.as_tensor(self.forces[a0:a1], dtype=torch.float32),
                    "energy": torch.as_tensor(
                        self.energy[start : start + batch_size], dtype=torch.float32
                    ),
                    "batch": torch.as_tensor(np.concatenate(batch), dtype=torch.long),
                    "edge_index": torch.as_tensor(np.concatenate(edges, axis=1), dtype=torch.long),
                    "num_graphs": batch_size,
                }
            )
        return out


def load_graphs(path: str) -> Graphs:
    """Read the ``.npz`` written by ``bench_model.py`` (see :class:`Graphs` for the fields)."""
    d = np.load(path)
    return Graphs(
        z=d["z"],
        pos=d["pos"],
        forces=d["forces"],
        energy=d["energy"],
        n_atoms=d["n_atoms"],
        edge_index=d["edge_index"],
        n_edges=d["n_edges"],
        avg_num_neighbors=float(d["avg_num_neighbors"]),
        elements=[int(v) for v in d["elements"]],
    )


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def set_nice(value: int) -> None:
    """Set the scheduling priority of every thread of this process (Linux nice is per thread;
    a negative value needs root). Used only around timed blocks, when asked for."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), value)
        except (PermissionError, ProcessLookupError):
            pass


def maxrss_mb() -> float:
    """Peak resident set size of this process so far in MiB (getrusage, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor (also inside dicts, lists, tuples and objects with ``.to``,
    such as a PyG ``Batch``) moved to ``device``; other values unchanged."""
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    if isinstance(obj, torch.Tensor) or hasattr(obj, "to"):
        return obj.to(device)
    return obj


def _nosync() -> None:
    return None


def syncer(device: torch.device) -> Callable[[], None]:
    """``torch.cuda.synchronize`` on a CUDA device (queued kernels must finish inside the
    timed step), a no-op on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else _nosync


class Adapter:
    """What one model worker supplies. ``forward(b, training)`` returns energy (B,) eV and
    forces (N,3) eV/Angstrom for a prepared batch ``b``; ``compiled_forward`` likewise after
    :meth:`compile` (return ``None`` from ``compile`` when the model has no compiled path)."""

    name = "model"
    model: torch.nn.Module
    #: set by :func:`serve` before the first step; models built later (compile) go here too
    device = torch.device("cpu")

    def prepare(self, batch: dict[str, Any]) -> Any:
        """Turn a plain batch (see :meth:`Graphs.batches`) into the model's own input."""
        raise NotImplementedError

    def forward(self, b: Any, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def compile(self, training: bool) -> tuple[str, torch.nn.Module] | None:
        """Set up ``self.compiled_forward`` for inference (or training); return a description
        and the module whose parameters it trains, or None when there is no compiled path."""
        return None

    def compiled_forward(self, b: Any, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}


def _timed(step: Callable[[Any], None], items: list, warmup: int, min_time: float,
           min_iters: int, sync: Callable[[], None] = _nosync
           ) -> tuple[list[float], float, float]:
    """Run ``warmup`` untimed steps, then steps until both ``min_iters`` and ``min_time`` s;
    return the duration of each timed step (s), the warm-up time (s) and the CPU time of this
    process (all threads) over the timed steps (s). ``sync`` runs before and after every step
    (``torch.cuda.synchronize`` on a GPU), so a step's time includes its queued kernels."""
    sync()
    t0 = time.perf_counter()
    for i in range(warmup):
        step(items[i % len(items)])
    sync()
    t_warm = time.perf_counter() - t0
    times: list[float] = []
    start, cpu0 = time.perf_counter(), time.process_time()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        sync()
        t = time.perf_counter()
        step(items[(warmup + len(times)) % len(items)])
        sync()
        times.append(time.perf_counter() - t)
    return times, t_warm, time.process_time() - cpu0


class Worker:
    """Runs the timing commands for one :class:`Adapter`."""

    def __init__(self, adapter: Adapter, batches: list[dict[str, Any]], batch_size: int,
                 fused_adam: bool = False):
        self.a = adapter
        self.fused_adam = fused_adam
        self.batch_size = batch_size
        self.device = adapter.device
        self.cuda = self.device.type == "cuda"
        self.sync = syncer(self.device)
        # prepared on the CPU (models' own input builders), then moved once, before timing
        self.items = [to_device(adapter.prepare(b), self.device) for b in batches]
        self.targets = [(b["energy"].to(self.device), b["forces"].to(self.device))
                        for b in batches]
        self.opt = self._adam(adapter.model.parameters())
        self.opt_compiled: torch.optim.Optimizer | None = None
        self.compiled: dict[bool, str | None] = {}

    def _adam(self, params) -> torch.optim.Optimizer:
        """The same optimizer for every model: torch's Adam, lr 1e-3; ``fused_adam``: its
        single-kernel implementation (on the CPU the default is a loop over the parameters)."""
        return torch.optim.Adam(params, lr=1e-3, fused=self.fused_adam or None)

    def _train_step(self, idx: int, compiled: bool) -> None:
        fwd = self.a.compiled_forward if compiled else self.a.forward
        opt = self.opt_compiled if compiled else self.opt
        energy_ref, forces_ref = self.targets[idx]
        opt.zero_grad(set_to_none=True)
        energy, forces = fwd(self.items[idx], True)
        loss = torch.mean((energy.view(-1) - energy_ref) ** 2) + torch.mean(
            (forces - forces_ref) ** 2
        )
        loss.backward()
        opt.step()

    def _infer_step(self, idx: int, compiled: bool) -> None:
        fwd = self.a.compiled_forward if compiled else self.a.forward
        energy, forces = fwd(self.items[idx], False)
        energy.detach(), forces.detach()

    def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Answer one command; ``nice`` (if given) applies while it runs, then back to 0."""
        nice = int(cmd.get("nice", 0))
        if nice:
            set_nice(nice)
        try:
            return self.profile(cmd) if cmd.get("profile") else self._run(cmd)
        finally:
            if nice:
                set_nice(0)

    def _memory(self) -> dict[str, float]:
        """Peak memory since the command began (MiB): host maxrss always, GPU on CUDA."""
        out = {"maxrss_mb": maxrss_mb()}
        if self.cuda:
            out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out

    def _run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        mode = cmd["mode"]
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        training = mode.startswith("train")
        compiled = mode.endswith("_compiled")
        self.a.model.train(training)
        reply: dict[str, Any] = {"mode": mode}
        if compiled:
            if training not in self.compiled:
                t0 = time.perf_counter()
                got = self.a.compile(training)
                self.compiled[training] = None if got is None else got[0]
                if got is not None and training:
                    self.opt_compiled = self._adam(got[1].parameters())
                reply["compile_setup_s"] = time.perf_counter() - t0
            if self.compiled[training] is None:
                reply["unsupported"] = True
                return reply
            reply["compiled_with"] = self.compiled[training]
        step = self._train_step if training else self._infer_step
        idxs = list(range(len(self.items)))
        if cmd.get("prepare_only"):  # compile and run every batch once; nothing timed
            t0 = time.perf_counter()
            for i in idxs:
                step(i, compiled)
            self.sync()
            reply.update(first_pass_s=time.perf_counter() - t0, **self._memory())
            return reply
        times, t_warm, cpu = _timed(lambda i: step(i, compiled), idxs,
                                    int(cmd.get("warmup", 3)), float(cmd.get("min_time", 3)),
                                    int(cmd.get("min_iters", 5)), self.sync)
        # the median step is robust to the spikes other jobs on shared cores cause
        reply.update(conf_per_s=self.batch_size / statistics.median(times),
                     mean_conf_per_s=self.batch_size * len(times) / sum(times),
                     best_conf_per_s=self.batch_size / min(times),
                     conf_per_cpu_s=self.batch_size * len(times) / cpu,
                     iters=len(times), seconds=sum(times), warmup_s=t_warm,
                     rss_mb=rss_mb(), **self._memory())
        return reply

    def profile(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """torch.profiler table of the top CPU ops over ``iters`` eager steps of ``mode``."""
        from torch.profiler import ProfilerActivity, profile

        training = cmd["mode"].startswith("train")
        self.a.model.train(training)
        step = self._train_step if training else self._infer_step
        for i in range(2):
            step(i % len(self.items), False)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        with profile(activities=activities) as prof:
            for i in range(int(cmd.get("iters", 10))):
                step(i % len(self.items), False)
            self.sync()
        table = prof.key_averages().table(sort_by="self_cpu_time_total",
                                          row_limit=int(cmd.get("rows", 20)))
        return {"mode": cmd["mode"], "profile": table}


def send(obj: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="model timing worker (driven by bench_model.py)")
    p.add_argument("--graphs", required=True, help=".npz of precomputed graphs")
    p.add_argument("--model", default="{}", help="JSON dict of model options")
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads (CPU only)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--optimizer", default="adam", choices=("adam", "adam-fused"),
                   help="training steps: torch Adam, default or fused implementation")
    return p.parse_args(argv)


def serve(make_adapter: Callable[[Graphs, dict[str, Any]], Adapter],
          argv: list[str] | None = None) -> None:
    """Worker main loop: build the model, report ``ready``, then answer commands on stdin."""
    args = worker_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":  # on a GPU the thread count is left to torch
        torch.set_num_threads(args.threads)
        # Every model alike: denormals in force-training backward passes stall multi-threaded
        # CPU steps (molsym train: 3.5 vs 197 conf/s with 2 threads); molsym train flushes too.
        torch.set_flush_denormal(True)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    graphs = load_graphs(args.graphs)
    try:
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"--device cuda, but this torch ({torch.__version__}, "
                               f"{sys.executable}) sees no CUDA device")
        adapter = make_adapter(graphs, json.loads(args.model))
        adapter.device = device
        adapter.model.to(device)
        worker = Worker(adapter, graphs.batches(args.batch_size), args.batch_size,
                        fused_adam=args.optimizer == "adam-fused")
    except Exception as exc:  # report, so the driver can say why this model is missing
        send({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise
    n_params = sum(p.numel() for p in adapter.model.parameters() if p.requires_grad)
    ready = {"event": "ready", "name": adapter.name, "params": n_params, "device": str(device),
             "rss_mb": rss_mb(), "maxrss_mb": maxrss_mb(), "threads": torch.get_num_threads(),
             "versions": adapter.versions(), "num_batches": len(worker.items)}
    if device.type == "cuda":
        ready.update(gpu=torch.cuda.get_device_name(device),
                     gpu_mb=torch.cuda.memory_allocated(device) / 2**20)
    send(ready)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("mode") == "quit":
            break
        try:
            reply = worker.run(cmd)
        except Exception as exc:
            reply = {"mode": cmd.get("mode"), "error": f"{type(exc).__name__}: {exc}"}
        send(reply)
