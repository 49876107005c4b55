"""Model speed of molsym against mace-torch and nequip on one CPU or GPU, same data, same run.

Builds the rMD17 aspirin graphs once (molsym's vesin neighbour list, cutoff 5 Angstrom), writes
them to a temporary ``.npz`` and starts one long-lived worker per model
(``scripts/benchmarks/peers/``), each in its own Python: molsym in this interpreter's venv,
mace-torch and nequip in their own venvs under ``--peer-venv-dir`` (created when missing). The
driver then runs the timing commands round-robin (models interleaved, each mode ``--rounds``
times) and reports medians.

Timed: training steps (forward energy + forces, MSE loss on both, backward, Adam step) and
inference (energy + forces by autograd), eager and compiled, batch 5, float32, 2 threads.
Every model trains with the same optimizer, torch Adam, in its default implementation or, with
``--optimizer adam-fused``, the fused one (what ``molsym train`` uses; nequip takes it through
its optimizer config).
Neighbour lists and batching happen before timing, for every model alike.
``--device cuda``: models and batches on the GPU, ``torch.cuda.synchronize`` around every timed
step, peak memory from ``torch.cuda.max_memory_allocated``; no thread or ``--nice`` settings;
peers whose venv is missing are skipped (no venv is created on a GPU machine).

    python -m scripts.benchmarks.bench_model --quick       # < 5 min with the venvs present
    python -m scripts.benchmarks.bench_model --write-docs  # full run, updates docs/benchmarks.md
    python -m scripts.benchmarks.bench_model --device cuda --quick --models molsym,molsym_invariant
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.benchmarks.common import DATA
from scripts.benchmarks.common import REPO as ROOT
from scripts.benchmarks.peers.report import (
    docs_section,
    last_line,
    machine,
    markdown_table,
    ratio_lines,
    write_docs,
)

MARK = "@@BENCH "
TORCH_PIN = "torch==2.13.0"
#: peer name -> (pip requirement, worker script)
#: peer name -> (pip requirement, worker module, run with ``python -m`` from the repository)
PEER_PACKAGES = {"mace": ("mace-torch==0.3.16", "scripts.benchmarks.peers.mace_worker"),
                 "nequip": ("nequip==0.19.1", "scripts.benchmarks.peers.nequip_worker")}
MODELS = ("molsym", "molsym_invariant", "mace", "nequip")
LABELS = {"molsym": "molsym flagship", "molsym_invariant": "molsym invariant",
          "mace": "mace-torch", "nequip": "nequip"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data",
                   default=str(DATA / "rmd17" / "rmd17_aspirin_train_01.npz"))
    p.add_argument("--peer-venv-dir", default=str(ROOT / "peers"))
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {MODELS}")
    p.add_argument("--n-conf", type=int, default=100, help="configurations (first n of --data)")
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the models run (cuda: GPU memory reported, no --threads/--nice)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker (CPU only)")
    p.add_argument("--num-channels", type=int, default=32)
    p.add_argument("--l-max", type=int, default=1)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--optimizer", default="adam", choices=("adam", "adam-fused"),
                   help="optimizer of every model's training steps: torch Adam (lr 1e-3), its "
                        "default implementation (a loop over parameters on the CPU) or fused "
                        "(one kernel; what molsym train uses)")
    p.add_argument("--rounds", type=int, default=3, help="repeats of each (model, mode)")
    p.add_argument("--min-time", type=float, default=6.0, help="seconds per timed block")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each block")
    p.add_argument("--nice", type=int, default=0,
                   help="scheduling priority of the worker during its timed blocks only "
                        "(negative = ahead of other jobs on shared cores; needs root)")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled modes")
    p.add_argument("--no-train-compiled", dest="train_compiled", action="store_false",
                   help="skip compiled training (timed by default where a model has it)")
    p.add_argument("--profile", action="store_true", help="torch.profiler top ops of molsym")
    p.add_argument("--quick", action="store_true",
                   help="1 round, short blocks, 25 configurations, invariant not compiled "
                        "(on cuda: nothing compiled, to stay within a short GPU slot)")
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--json", default=None, help="write all raw results here")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.min_time, args.n_conf, args.warmup = 1, 1.0, 25, 2
    return args


# ----------------------------------------------------------------------------- venvs
def venv_python(venv_dir: Path, peer: str) -> Path:
    return venv_dir / peer / "bin" / "python"


def ensure_venv(venv_dir: Path, peer: str) -> Path:
    """Return the peer venv's python; create the venv (torch pinned first) when missing."""
    py = venv_python(venv_dir, peer)
    requirement = PEER_PACKAGES[peer][0]
    if py.exists():
        return py
    print(f"[bench] creating venv {venv_dir / peer} ({TORCH_PIN}, then {requirement})",
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir / peer)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH_PIN], check=True)  # first: a bare torch pulls a CUDA build
    subprocess.run(pip + [requirement, TORCH_PIN], check=True)
    return py


# ----------------------------------------------------------------------------- graphs
def build_graphs(data: str, n_conf: int, cutoff: float, out: Path) -> dict[str, Any]:
    """Neighbour lists (molsym's, vesin) of the first ``n_conf`` frames -> ``out`` (.npz)."""
    from molsym.data.graph import neighbour_list
    from molsym.units import KCAL_PER_MOL

    d = np.load(data)
    z = np.asarray(d["nuclear_charges"], dtype=np.int64)
    coords = np.asarray(d["coords"][:n_conf], dtype=np.float64)
    energy = np.asarray(d["energies"][:n_conf], dtype=np.float64) * KCAL_PER_MOL
    forces = np.asarray(d["forces"][:n_conf], dtype=np.float64) * KCAL_PER_MOL
    edges, n_edges = [], []
    for frame in coords:
        e, _, _ = neighbour_list(frame, cutoff)
        edges.append(e)
        n_edges.append(e.shape[1])
    n_atoms = np.full(len(coords), len(z))
    avg = float(np.sum(n_edges) / np.sum(n_atoms))
    np.savez(out, z=np.tile(z, len(coords)), pos=coords.reshape(-1, 3),
             forces=forces.reshape(-1, 3), energy=energy - energy.mean(), n_atoms=n_atoms,
             edge_index=np.concatenate(edges, axis=1), n_edges=np.asarray(n_edges),
             avg_num_neighbors=avg, elements=np.unique(z))
    return {"n_conf": len(coords), "n_atoms": int(len(z)), "avg_num_neighbors": avg,
            "edges_per_conf": float(np.mean(n_edges))}


# ----------------------------------------------------------------------------- workers
class WorkerProc:
    """One long-lived model worker (see scripts/benchmarks/peers/_common.py) driven over
    stdin/stdout."""

    def __init__(self, key: str, python: str, script: str, graphs: Path, opts: dict[str, Any],
                 args: argparse.Namespace, log_dir: Path):
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        if args.device == "cpu":  # on a GPU the host thread count is left alone
            env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        self.key = key
        self.ready: dict[str, Any] = {}
        self.log = open(log_dir / f"{key}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [python, "-m", script, "--graphs", str(graphs), "--model", json.dumps(opts),
             "--batch-size", str(args.batch_size), "--threads", str(args.threads),
             "--device", args.device, "--optimizer", args.optimizer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
            cwd=str(ROOT))
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.lines.put(line[len(MARK):])
        self.lines.put(None)

    def reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return {"error": f"no answer in {timeout:.0f} s"}
        if line is None:
            return {"error": f"worker exited (rc={self.proc.wait()}); see {self.log.name}"}
        return json.loads(line)

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.lines.put(None)

    def ask(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(cmd)
        return self.reply(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"mode": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def model_opts(key: str, args: argparse.Namespace) -> dict[str, Any]:
    common = {"cutoff": args.cutoff, "num_channels": args.num_channels, "l_max": args.l_max,
              "num_layers": args.num_layers}
    if key == "molsym":
        return {"model_class": "equivariant", **common}
    if key == "molsym_invariant":
        return {"model_class": "invariant", **common}
    return common


def start_workers(keys: list[str], args: argparse.Namespace, graphs: Path,
                  log_dir: Path) -> dict[str, WorkerProc]:
    """Start all workers at once (nothing is timed yet) and wait for each one's ``ready``."""
    venv_dir = Path(args.peer_venv_dir)
    started: dict[str, WorkerProc] = {}
    for key in keys:
        if key in PEER_PACKAGES:
            python, script = str(ensure_venv(venv_dir, key)), PEER_PACKAGES[key][1]
        else:
            python, script = sys.executable, "scripts.benchmarks.peers.molsym_worker"
        started[key] = WorkerProc(key, python, script, graphs, model_opts(key, args), args,
                                  log_dir)
    workers: dict[str, WorkerProc] = {}
    for key, w in started.items():
        w.ready = w.reply(args.startup_timeout)
        if "error" in w.ready:
            print(f"[bench] {key}: could not start: {w.ready['error']}", flush=True)
            w.close()
            continue
        print(f"[bench] {key}: ready, {w.ready['params']} parameters, "
              f"versions {w.ready['versions']}", flush=True)
        workers[key] = w
    return workers


# ----------------------------------------------------------------------------- timing
def modes_for(key: str, args: argparse.Namespace) -> list[str]:
    modes = ["train", "infer"]
    compile_ok = not args.no_compile and key != "mace"  # mace: no CPU compile path used
    if args.quick and (key == "molsym_invariant" or args.device == "cuda"):
        compile_ok = False
    if compile_ok:
        modes.append("infer_compiled")
        if args.train_compiled:
            modes.append("train_compiled")
    return modes


def prepare_compiled(workers: dict[str, WorkerProc], args: argparse.Namespace,
                     results: dict[str, Any]) -> None:
    """Compile every model at once (compilation is mostly one core each) and run each batch
    once, so that compile time and shape-driven recompiles stay out of the timed blocks."""
    for mode in ("infer_compiled", "train_compiled"):
        keys = [k for k in workers if mode in modes_for(k, args)]
        for key in keys:
            workers[key].send({"mode": mode, "prepare_only": True, "nice": args.nice})
        for key in keys:
            rep = workers[key].reply(1200.0)
            results[key].setdefault(f"prepare_{mode}", []).append(rep)
            took = rep.get("compile_setup_s", 0) + rep.get("first_pass_s", 0)
            print(f"[bench] {key:17s} {mode:15s} compiled + one pass over the batches in "
                  f"{took:.0f} s {rep.get('error', '')}", flush=True)


def run_rounds(workers: dict[str, WorkerProc], args: argparse.Namespace) -> dict[str, Any]:
    """Round-robin: in each round every mode runs once per model, model order rotated, so
    that background load on the shared cores hits all models alike. The first command of each
    worker is eager training, so its peak RSS is that of training."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in workers}
    keys = list(workers)
    all_modes = ["train", "infer", "infer_compiled", "train_compiled"]
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for mode in all_modes:
            if mode == "infer_compiled" and r == 0:
                prepare_compiled(workers, args, results)
            for key in order:
                if mode not in modes_for(key, args):
                    continue
                cmd = {"mode": mode, "warmup": args.warmup, "min_time": args.min_time,
                       "min_iters": 5, "nice": args.nice}
                t0 = time.time()
                rep = workers[key].ask(cmd, 300 + 20 * args.min_time)
                rep["wall_s"] = time.time() - t0
                rep["loadavg"] = os.getloadavg()[0]
                results[key].setdefault(mode, []).append(rep)
                rate = rep.get("conf_per_s")
                shown = f"{rate:.1f} conf/s" if rate else rep.get("error", "unsupported")
                print(f"[bench] round {r + 1}/{args.rounds} {key:17s} {mode:15s} {shown}"
                      f" (load {rep['loadavg']:.1f})", flush=True)
    return results


def median_rate(results: dict[str, Any], key: str, mode: str,
                field: str = "conf_per_s") -> float | None:
    """Median over rounds of a block's rate (each block's rate is from its median step)."""
    rates = [r[field] for r in results.get(key, {}).get(mode, []) if field in r]
    return statistics.median(rates) if rates else None


def best_rate(results: dict[str, Any], key: str, mode: str) -> float | None:
    """Fastest single step over all rounds: the least disturbed by other jobs."""
    rates = [r["best_conf_per_s"] for r in results.get(key, {}).get(mode, [])
             if "best_conf_per_s" in r]
    return max(rates) if rates else None


def summarize(workers: dict[str, WorkerProc], results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, w in workers.items():
        train = results[key].get("train", [{}])
        comp = results[key].get("prepare_infer_compiled", [{}])[0]
        rows.append({
            "key": key, "label": LABELS[key], "params": w.ready["params"],
            "train": median_rate(results, key, "train"),
            "infer": median_rate(results, key, "infer"),
            "infer_compiled": median_rate(results, key, "infer_compiled"),
            "train_compiled": median_rate(results, key, "train_compiled"),
            **{f"best_{m}": best_rate(results, key, m)
               for m in ("train", "infer", "infer_compiled", "train_compiled")},
            **{f"cpu_{m}": median_rate(results, key, m, "conf_per_cpu_s")
               for m in ("train", "infer", "infer_compiled", "train_compiled")},
            "rss_idle_mb": w.ready["rss_mb"],
            "peak_train_mb": train[0].get("maxrss_mb"),
            "gpu_idle_mb": w.ready.get("gpu_mb"),  # CUDA only: allocated by the model
            "peak_train_gpu_mb": train[0].get("gpu_peak_mb"),
            "compile_warmup_s": (comp["compile_setup_s"] + comp["first_pass_s"]
                                 if "first_pass_s" in comp else None),
            "n_rounds": len(train),
            "spread_train": [min((r["conf_per_s"] for r in train if "conf_per_s" in r),
                                 default=None),
                             max((r["conf_per_s"] for r in train if "conf_per_s" in r),
                                 default=None)],
        })
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """molsym flagship over each peer; compiled vs compiled where both have a compiled path.

    ``<peer>_train``/``<peer>_infer`` use the median rates; the ``best_`` and ``cpu_`` variants
    the fastest step and the configurations per CPU-second (less sensitive to other jobs)."""
    by = {r["key"]: r for r in rows}
    out: dict[str, Any] = {}
    ms = by.get("molsym")
    div = lambda a, b: a / b if a and b else None  # noqa: E731
    for peer in ("mace", "nequip"):
        p = by.get(peer)
        if ms is None or p is None:
            out.update({f"{peer}_train": None, f"{peer}_infer": None,
                        f"{peer}_infer_mode": "infer", f"{peer}_train_mode": "train"})
            continue
        mode = "infer_compiled" if ms["infer_compiled"] and p["infer_compiled"] else "infer"
        train = "train_compiled" if ms["train_compiled"] and p["train_compiled"] else "train"
        out[f"{peer}_infer_mode"] = mode
        out[f"{peer}_train_mode"] = train
        for prefix in ("", "best_", "cpu_"):
            out[f"{prefix}{peer}_train"] = div(ms[prefix + train], p[prefix + train])
            out[f"{prefix}{peer}_infer"] = div(ms[prefix + mode], p[prefix + mode])
    return out


def profile_molsym(workers: dict[str, WorkerProc], nice: int) -> str:
    """torch.profiler top ops (self CPU time) of the molsym flagship, train and infer."""
    w = workers.get("molsym")
    if w is None:
        return ""
    parts = []
    for mode in ("train", "infer"):
        rep = w.ask({"profile": True, "mode": mode, "iters": 10, "rows": 25, "nice": nice}, 600)
        parts.append(f"### molsym flagship, {mode} (10 steps, sorted by self CPU time)\n"
                     + rep.get("profile", rep.get("error", "")))
    return "\n".join(parts)


def check_device(args: argparse.Namespace) -> str:
    """Describe ``args.device`` (GPU name on CUDA); exit with one line when CUDA is missing.
    On CUDA ``--nice`` is dropped (GPU steps barely contend for the shared cores)."""
    if args.device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(f"bench_model: --device cuda, but torch {torch.__version__} sees no "
                         "CUDA device here (no GPU or a CPU-only build); use --device cpu")
    if args.nice:
        print(f"[bench] --nice {args.nice} ignored on cuda", flush=True)
        args.nice = 0
    return f"cuda ({torch.cuda.get_device_name(0)})"


def peer_keys(keys: list[str], args: argparse.Namespace) -> list[str]:
    """Create missing peer venvs on the CPU (before anything is timed); on CUDA skip a peer
    whose venv is missing, with one line (GPU machines have no network for pip)."""
    venv_dir = Path(args.peer_venv_dir)
    kept = []
    for key in keys:
        if key in PEER_PACKAGES and args.device == "cuda" and not venv_python(
                venv_dir, key).exists():
            print(f"[bench] {key}: skipped on cuda: no venv at {venv_dir / key} (create it "
                  f"with a CUDA torch and {PEER_PACKAGES[key][0]})", flush=True)
            continue
        if key in PEER_PACKAGES:
            ensure_venv(venv_dir, key)
        kept.append(key)
    return kept


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in MODELS]
    if bad:
        raise SystemExit(f"unknown model(s) {bad}; choose from {MODELS}")
    if not Path(args.data).exists():
        raise SystemExit(f"data file not found: {args.data} (use --data)")
    device = check_device(args)
    keys = peer_keys(keys, args)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        tmp_path = Path(tmp)
        graphs = tmp_path / "graphs.npz"
        info = build_graphs(args.data, args.n_conf, args.cutoff, graphs)
        print(f"[bench] {info}", flush=True)
        workers = start_workers(keys, args, graphs, tmp_path)
        try:
            results = run_rounds(workers, args)
            prof = profile_molsym(workers, args.nice) if args.profile else ""
        finally:
            for w in workers.values():
                w.close()
            if any("error" in r for res in locals().get("results", {}).values()
                   for rs in res.values() for r in rs):
                for w in workers.values():
                    print(f"--- {w.key} log (tail)\n"
                          + Path(w.log.name).read_text()[-1500:], flush=True)
    load1 = os.getloadavg()[0]
    rows = summarize(workers, results)
    rat = ratios(rows)
    if prof:
        print(prof)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": device, "rows": rows, "ratios": rat, "results": results, "graphs": info,
             "machine": machine(), "args": vars(args)}, indent=1, default=str))
    table = markdown_table(rows, args.train_compiled, device)
    print(table)
    print("\n".join(ratio_lines(rat)))
    if args.write_docs:
        write_docs(Path(args.docs), docs_section(rows, rat, workers, info, args, argv,
                                                 (load0, load1), device))
        print(f"[bench] wrote the Model speed section of {args.docs}")
    print(last_line(rat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
