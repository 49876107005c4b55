"""End-to-end training throughput: ``molsym train`` against ``nequip-train``, ``mace_run_train``
and SchNetPack's trainer, on the same rMD17 aspirin frames (950 train / 50 validation), the
same threads, in one run.

Every tool trains through its own CLI in its own venv (molsym in this interpreter's; the peers
under ``peers/<peer>``, via the drivers ``mace_peer``, ``nequip_peer`` and ``schnetpack_peer``),
with models of the width, depth and l_max of ``bench_model`` (32 channels, 2 layers, l_max 1;
SchNetPack: PaiNN, whose features stop at l = 1), batch 5, float32, EMA, a validation pass and
checkpoints every epoch, for ``--epochs`` epochs (4, quick; 10). Each tool's own epoch clock
gives the time of every epoch boundary: :mod:`scripts.benchmarks.epoch_clock` (a callback of
the Lightning trainers: molsym, nequip, SchNetPack) and MACE's log lines after each
validation. Throughput = training frames per second over the epochs after the first (data
loading, collation, forward, force double backward, optimizer, EMA, logging, validation,
checkpoints); ``startup_s`` (launch to the first epoch), ``first_epoch_s`` (compilation) and
``tail_s`` (after the last epoch: final test, deployment) are reported beside it. Each run
gets a fresh Inductor cache (TORCHINDUCTOR_CACHE_DIR), so compiling is timed cold.

Why not the difference of two runs of E1 and E2 epochs: compiling (1-3 min on a CPU) varies
by more than an epoch takes (a 1- and a 2-epoch ``molsym train`` took 174.4 and 173.5 s under
load), so the difference of short runs measures compile noise.

molsym's run also carries :class:`~scripts.benchmarks.train_step_timer.StepTimer`, which splits
each step into data, forward, loss, logging, backward, optimizer, EMA and Lightning hooks;
``overhead`` is the share of a step outside forward, loss, backward and optimizer (what
``bench_model`` times as a step), over the epochs after the first.

    python -m scripts.benchmarks.bench_train --quick           # < 10 min with the peer venvs
    python -m scripts.benchmarks.bench_train --threads 2
    python -m scripts.benchmarks.bench_train --profile --steps 100   # molsym only

Writes scripts/benchmarks/results/train_speed.json; the last line printed is
``e2e_speedup_vs_nequip=X e2e_speedup_vs_mace=Y overhead=Z``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from scripts.benchmarks import common, mace_peer, nequip_peer, schnetpack_peer
from scripts.benchmarks.bench_model import parse_args as bench_model_args
from scripts.benchmarks.epoch_clock import boundaries
from scripts.benchmarks.train_step_timer import summarize as summarize_steps

MOLECULE = "aspirin"
N_TRAIN, N_VAL, BATCH = 950, 50, 5
TOOLS = ("molsym", "nequip", "mace", "schnetpack")
TIMER = "scripts.benchmarks.train_step_timer.StepTimer"
CLOCK = "scripts.benchmarks.epoch_clock.epoch_clock"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="4 epochs per tool (under 10 minutes)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per tool (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {TOOLS}")
    p.add_argument("--nequip-compile", action="store_true",
                   help="nequip-train with compile_mode=compile (default: eager, its default)")
    p.add_argument("--profile", action="store_true",
                   help="only molsym: 2 epochs of --steps steps with the step timer")
    p.add_argument("--steps", type=int, default=100, help="--profile: steps per epoch")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per training run")
    p.add_argument("--out", default=str(common.RESULTS / "train_speed.json"))
    args = p.parse_args(argv)
    args.epochs = args.epochs or (4 if args.quick else 10)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is not timed)")
    args.tools = [t for t in args.tools.split(",") if t]
    if unknown := set(args.tools) - set(TOOLS):
        p.error(f"unknown tools {sorted(unknown)}")
    return args


def model_size() -> dict[str, int]:
    """Width, depth and l_max of bench_model's models (its defaults)."""
    d = bench_model_args([])
    return {"channels": d.num_channels, "layers": d.num_layers, "l_max": d.l_max}


# ----------------------------------------------------------------------------- summary
def throughput(bounds: list[float], launched: float, wall_s: float,
               n_train: int = N_TRAIN) -> dict[str, Any]:
    """Training frames per second from a run's epoch boundaries (UNIX times: start of epoch 0,
    start of epoch 1, ..., end of training), over the epochs after the first; ``launched``:
    when the process started, ``wall_s``: its run time. Returns {"conf_per_s", "epoch_s",
    "timed_epochs", "startup_s" (launch to epoch 0), "first_epoch_s", "tail_s" (end of
    training to exit)}; None values without two boundaries after epoch 0."""
    if len(bounds) < 3 or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
        return {"conf_per_s": None, "epoch_s": None, "timed_epochs": 0, "startup_s": None,
                "first_epoch_s": None, "tail_s": None}
    timed = len(bounds) - 2
    epoch_s = (bounds[-1] - bounds[1]) / timed
    return {"conf_per_s": round(n_train / epoch_s, 2), "epoch_s": round(epoch_s, 3),
            "timed_epochs": timed, "startup_s": round(bounds[0] - launched, 2),
            "first_epoch_s": round(bounds[1] - bounds[0], 2),
            "tail_s": round(launched + wall_s - bounds[-1], 2)}


def speedups(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """molsym's throughput over each peer's (None where either is missing)."""
    ours = (results.get("molsym") or {}).get("conf_per_s")
    out: dict[str, float | None] = {}
    for peer in TOOLS[1:]:
        theirs = (results.get(peer) or {}).get("conf_per_s")
        out[peer] = round(ours / theirs, 3) if ours and theirs else None
    return out


def last_line(speedup: dict[str, float | None], overhead: float | None) -> str:
    """``e2e_speedup_vs_nequip=X e2e_speedup_vs_mace=Y overhead=Z`` (``nan`` when unknown)."""
    def f(v: float | None) -> str:
        return "nan" if v is None else f"{v:.3g}"

    return (f"e2e_speedup_vs_nequip={f(speedup.get('nequip'))} "
            f"e2e_speedup_vs_mace={f(speedup.get('mace'))} overhead={f(overhead)}")


# ----------------------------------------------------------------------------- runs
@contextmanager
def fresh_inductor_cache(run_dir: Path) -> Iterator[None]:
    """TORCHINDUCTOR_CACHE_DIR set to an empty folder of ``run_dir`` for the block (the runs
    read os.environ through :func:`common.run_logged`), so every run compiles cold."""
    cache = run_dir / "inductor_cache"
    shutil.rmtree(cache, ignore_errors=True)
    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def molsym_overrides(size: dict[str, int], threads: int) -> list[str]:
    return ["experiment=rmd17", f"data.molecule={MOLECULE}", f"data_root={common.DATA}",
            "seed=0", *common.EXPERIMENT_OVERRIDES["rmd17"], f"data.num_train={N_TRAIN}",
            f"data.num_val={N_VAL}", f"data.batch_size={BATCH}",
            f"model.num_channels={size['channels']}", f"model.num_layers={size['layers']}",
            f"model.l_max={size['l_max']}", f"num_threads={threads}"]


def run_molsym(run_dir: Path, epochs: int, overrides: list[str], timeout: float,
               extra: tuple[str, ...] = (), fresh_cache: bool = True) -> dict[str, Any]:
    """``molsym train`` for ``epochs`` epochs with the epoch clock (epochs.json) and the step
    timer (steps.json) in ``run_dir``; ``fresh_cache=False`` keeps the caller's Inductor
    cache (TORCHINDUCTOR_CACHE_DIR) instead of an empty one."""
    args = [*overrides, f"trainer.max_epochs={epochs}", *extra, f"hydra.run.dir={run_dir}",
            f"+callbacks.epoch_clock._target_={CLOCK}",
            f"+callbacks.epoch_clock.path={run_dir / 'epochs.json'}",
            f"+callbacks.step_timer._target_={TIMER}",
            f"+callbacks.step_timer.path={run_dir / 'steps.json'}"]
    with fresh_inductor_cache(run_dir) if fresh_cache else nullcontext():
        status, wall = common.run_logged([str(common.MOLSYM), "train", *args],
                                         run_dir / "bench.log", timeout=timeout)
    return {"wall_s": round(wall, 2), "status": status,
            "command": "molsym train " + shlex.join(args)}


def write_peer_data(splits_json: Path, out: Path) -> tuple[Path, Path]:
    """molsym's train/val frames (its splits.json) as extxyz for the peers."""
    from molsym.data.readers import read_file

    splits = json.loads(splits_json.read_text())
    frames = read_file(common.DATA / "rmd17" / f"rmd17_{MOLECULE}_train_01.npz")
    return (mace_peer.write_extxyz([frames[i] for i in splits["train"]], out / "train.xyz"),
            mace_peer.write_extxyz([frames[i] for i in splits["val"]], out / "valid.xyz"))


def peer_train(tool: str, run_dir: Path, data: tuple[Path, Path], epochs: int,
               size: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """One run of a peer for ``epochs`` epochs through its driver (a fresh ``run_dir``); the
    epoch clock writes ``run_dir/epochs.json`` (MACE: its log)."""
    budget = args.timeout
    c, n, lmax = size["channels"], size["layers"], size["l_max"]
    clock = run_dir / "epochs.json"
    with fresh_inductor_cache(run_dir):
        if tool == "nequip":
            model = {"l_max": lmax, "num_features": c, "num_layers": n, "parity": False,
                     "radial_mlp_depth": 1, "radial_mlp_width": 128, "num_bessels": 8}
            if args.nequip_compile:
                model["compile_mode"] = "compile"
            callback = {"_target_": CLOCK,
                        "path": str(clock), "package": "lightning.pytorch"}
            res = nequip_peer.train(run_dir, *data, budget, model=model, max_epochs=epochs,
                                    batch_size=BATCH, callbacks=[callback])
        elif tool == "mace":
            irreps = f"{c}x0e + {c}x1o" if lmax > 0 else f"{c}x0e"
            flags = ["--model", "MACE", "--hidden_irreps", irreps, "--max_ell", str(lmax),
                     "--correlation", "3", "--num_interactions", str(n),
                     "--num_radial_basis", "8", "--radial_MLP", "[64, 64, 64]"]
            res = mace_peer.train(run_dir, *data, budget, batch_size=BATCH, max_epochs=epochs,
                                  model_args=flags, finish=False)
            res["status"] = 0 if res["model"] else 1
        else:
            model = {"n_atom_basis": c, "n_interactions": n, "n_rbf": 20}
            res = schnetpack_peer.train(run_dir, *data, budget, model=model, max_epochs=epochs,
                                        batch_size=BATCH, epoch_clock=clock)
    wall = res["wall_s"]
    return {"wall_s": None if wall is None else round(wall, 2), "status": res["status"],
            "command": res["command"]}


def epoch_bounds(tool: str, run_dir: Path) -> list[float]:
    """The epoch boundaries of a finished run (:func:`throughput`)."""
    if tool == "mace":
        return mace_peer.epoch_boundaries(run_dir)
    path = run_dir / "epochs.json"
    return boundaries(json.loads(path.read_text())) if path.is_file() else []


def available(tool: str) -> bool:
    return {"molsym": lambda: common.MOLSYM.is_file(), "nequip": nequip_peer.available,
            "mace": mace_peer.available, "schnetpack": schnetpack_peer.available}[tool]()


def run_all(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """One run of every tool; molsym first (its splits.json gives the peers' frames)."""
    size = model_size()
    results: dict[str, Any] = {}
    data = None
    for tool in args.tools:
        if not available(tool):
            print(f"[bench_train] {tool}: not installed, skipped", flush=True)
            results[tool] = {"skipped": "not installed"}
            continue
        run_dir = (base / tool).resolve()
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        launched, load = time.time(), round(os.getloadavg()[0], 2)
        if tool == "molsym":
            run = run_molsym(run_dir, args.epochs, molsym_overrides(size, args.threads),
                             args.timeout)
        else:
            if data is None:
                data = write_peer_data(base / "molsym" / "splits.json", base)
            run = peer_train(tool, run_dir, data, args.epochs, size, args)
        run.update(epochs=args.epochs, load_before=load,
                   load_after=round(os.getloadavg()[0], 2))
        res = {"run": run, **throughput(epoch_bounds(tool, run_dir), launched,
                                        run["wall_s"] or 0.0)}
        if tool == "molsym":
            res["profile"] = molsym_profile(run_dir)
        print(f"[bench_train] {tool}: {run['wall_s']} s (status {run['status']}), "
              f"{res['conf_per_s']} conf/s", flush=True)
        results[tool] = res
    return results


def molsym_profile(run_dir: Path, skip_epochs: int = 1) -> dict[str, Any] | None:
    """Step shares of a molsym run from its steps.json (epochs after the first)."""
    path = run_dir / "steps.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    return summarize_steps(rec["steps"], rec["epochs"], skip_epochs)


def profile_only(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """``--profile``: one molsym run of 2 epochs of ``--steps`` steps, with the step timer."""
    run_dir = (base / "profile").resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    run = run_molsym(run_dir, 2, molsym_overrides(model_size(), args.threads), args.timeout,
                     extra=(f"+trainer.limit_train_batches={args.steps}",))
    return {"molsym": {"run": run, "profile": molsym_profile(run_dir)}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start, load_start = time.perf_counter(), os.getloadavg()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every run (common.run_logged)
    base = common.RUNS / "bench_train"
    results = profile_only(args, base) if args.profile else run_all(args, base)
    profile = (results.get("molsym") or {}).get("profile") or {}
    overhead = profile.get("overhead")
    ratio = speedups(results)
    data = {"environment": common.environment(peers=tuple(args.tools), threads=args.threads),
            "quick": args.quick, "mode": "profile" if args.profile else "throughput",
            "epochs": args.epochs, "model_size": model_size(), "n_train": N_TRAIN,
            "n_val": N_VAL, "batch_size": BATCH, "nequip_compile": args.nequip_compile,
            "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()],
            "wall_s": round(time.perf_counter() - start, 1),
            "results": results, "speedup": ratio, "overhead": overhead}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(common.portable(data), indent=2) + "\n")
    for tool, res in results.items():
        if "conf_per_s" in res:
            print(f"{tool}: {res['conf_per_s']} conf/s, {res['epoch_s']} s/epoch, startup "
                  f"{res['startup_s']} s, first epoch {res['first_epoch_s']} s")
    if profile:
        shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in profile["shares"].items())
        print(f"molsym step {profile['step_ms']} ms: {shares}")
    print(f"wrote {out} ({data['wall_s']} s)")
    print(last_line(ratio, overhead))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
