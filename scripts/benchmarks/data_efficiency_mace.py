"""Data efficiency with a peer: mace-torch, molsym's flagship and the invariant baseline on
the aspirin learning-curve splits of ``data_efficiency.py`` (the same training, validation and
test frames), each run making the same number of optimizer steps at batch 5, in one run.

It asks whether the study's target (3x lower force error than the invariant baseline at equal
N) is reached by MACE itself in the same setting. MACE runs from its own venv
(``peers/mace``, see ``mace_peer.py``) with its own recipe (Adam lr 0.01, EMA 0.99, E:F 1:100,
ReduceLROnPlateau on the validation loss, evaluated every ``--eval-interval`` epochs), the
CPU-sized model of the accuracy study (``mace_peer.MACE_ARGS``: 32x0e+32x1o, L=1, 2 layers,
correlation 3, r_max 5 Angstrom), float32; molsym's models run with the data-efficiency
protocol (cosine schedule over the run's steps, compiled), 5 Angstrom. 1 thread a run.

    python -m scripts.benchmarks.data_efficiency_mace --sizes 25 50 --max-steps 3000 --jobs 2
    python -m scripts.benchmarks.data_efficiency_mace --quick     # CI-sized check
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import threading
from pathlib import Path
from typing import Any

from scripts.benchmarks import common, data_efficiency, mace_peer

HEADING = "Data efficiency: MACE on the same splits"
RESULT = "data_efficiency_mace"
BATCH_SIZE = 5
MODELS = ("mace", *data_efficiency.MODELS)
#: flagship / MACE within 1 +- LEVEL reads as level: single seeds, whose spread at N=25 is
#: about 10% (docs/benchmarks.md, "Architecture pilots at N=25")
LEVEL = 0.05


def steps_per_epoch(n_train: int, batch_size: int = BATCH_SIZE) -> int:
    """Optimizer steps of one epoch (the last batch may be short)."""
    return -(-n_train // batch_size)


def epochs_for(steps: int, n_train: int, batch_size: int = BATCH_SIZE) -> int:
    """Epochs that make ``steps`` optimizer steps with ``n_train`` frames (at least 1)."""
    return max(1, -(-steps // steps_per_epoch(n_train, batch_size)))


def write_point(out: Path, n_train: int, molecule: str = "aspirin") -> dict[str, Path]:
    """The split of data_efficiency.py for ``n_train`` frames of an rMD17 ``molecule`` and its
    frames as MACE extxyz files."""
    from molsym.data.readers import read_file

    test = list(range(0, 1000, data_efficiency.ASPIRIN_TEST_EVERY))
    split = data_efficiency.split_file(out / "split.json", 1000, n_train, 50, test, "test_path")
    idx = json.loads(split.read_text())
    paths = {part: out / f"{part}.xyz" for part in ("train", "valid", "test")}
    if not all(p.is_file() for p in paths.values()):
        pool = read_file(common.DATA / "rmd17" / f"rmd17_{molecule}_train_01.npz")
        held = read_file(common.DATA / "rmd17" / f"rmd17_{molecule}_test_01.npz")
        mace_peer.write_extxyz([pool[i] for i in idx["train"]], paths["train"])
        mace_peer.write_extxyz([pool[i] for i in idx["val"]], paths["valid"])
        mace_peer.write_extxyz([held[i] for i in idx["test"]], paths["test"])
    return paths


def run_mace(out: Path, n_train: int, steps: int, eval_interval: int,
             budget_s: float | None, cutoff: float = 5.0,
             molecule: str = "aspirin", seed: int = 0) -> dict[str, Any]:
    """Train and test MACE at one N with ``seed`` (a finished run folder is reused)."""
    paths = write_point(out, n_train, molecule)
    epochs = epochs_for(steps, n_train)
    trained = mace_peer.train(out, paths["train"], paths["valid"], budget_s,
                              batch_size=BATCH_SIZE, max_epochs=epochs,
                              eval_interval=eval_interval, patience=100000, r_max=cutoff,
                              seed=seed)
    res: dict[str, Any] = {"epochs": epochs, "steps": epochs * steps_per_epoch(n_train),
                           **trained}
    if trained["model"]:
        res["metrics"] = mace_peer.evaluate(Path(trained["model"]), paths["test"],
                                            out / "test_pred.xyz", out / "eval.log")
    return res


def run_molsym(out: Path, model: str, n_train: int, steps: int,
               budget_s: float | None, cutoff: float = 5.0, molecule: str = "aspirin",
               extra: list[str] = ()) -> dict[str, Any]:
    """One ``molsym train`` run of the aspirin study's protocol (cosine, compiled) at N, on an
    rMD17 ``molecule``, with ``extra`` overrides last (they win over the protocol's)."""
    protocol = [f"cutoff={cutoff:g}", *data_efficiency.protocol_overrides(steps, True, "cosine"),
                *extra]
    ovs = data_efficiency.overrides(molecule, data_efficiency.MODELS[model], n_train, out, 0,
                                    protocol)
    return common.molsym_train(out, ovs, budget_s, out.with_suffix(".log"))


def force_mae(run: dict[str, Any] | None) -> float | None:
    return ((run or {}).get("metrics") or {}).get("forces", {}).get("mae")


def _whole(x: float | None) -> int | None:
    return None if x is None else int(round(x))


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def report(results: dict[str, Any]) -> str:
    """One table per cutoff (see :func:`cutoff_table`), cutoffs in decreasing order."""
    return "\n\n".join(cutoff_table(results["cutoffs"][c], float(c))
                       for c in sorted(results.get("cutoffs", {}), key=float, reverse=True))


def points(entry: dict[str, Any]) -> dict[int, dict[str, float | None]]:
    """{N: {model: force MAE}} of one cutoff's runs (None where a run is missing)."""
    runs = entry["runs"]
    return {n: {m: force_mae(runs.get(m, {}).get(str(n))) for m in MODELS}
            for n in sorted({int(k) for by_n in runs.values() for k in by_n})}


def verdict(entry: dict[str, Any], cutoff: float) -> str:
    """One sentence: the invariant / MACE and invariant / flagship ranges against the 3x
    target, and flagship / MACE, from the stored numbers."""
    pts = points(entry).items()
    by = {key: [ratio(p[a], p[b]) for _, p in pts] for key, (a, b) in
          {"inv_mace": ("invariant", "mace"), "inv_flag": ("invariant", "flagship"),
           "flag_mace": ("flagship", "mace")}.items()}
    by = {k: [x for x in v if x is not None] for k, v in by.items()}
    if not all(by.values()):
        return ""

    def span(xs: list[float]) -> str:
        low, high = f"{min(xs):.2f}", f"{max(xs):.2f}"
        return low if low == high else f"{low}-{high}"

    ns = ", ".join(str(n) for n, _ in pts)
    def reaches(xs: list[float]) -> str:
        return "reaches" if min(xs) >= 3 else "does not reach"

    fm = by["flag_mace"]
    side = (f"level with MACE (within {LEVEL:.0%} at every N)"
            if max(abs(x - 1) for x in fm) <= LEVEL else "behind MACE" if min(fm) > 1 + LEVEL
            else "ahead of MACE" if max(fm) < 1 - LEVEL else "behind MACE at some N, not at others")
    return (f"At {cutoff:g} Å and N = {ns}: invariant / MACE {span(by['inv_mace'])}, invariant "
            f"/ flagship {span(by['inv_flag'])}: MACE {reaches(by['inv_mace'])} the 3x target, "
            f"molsym's flagship {reaches(by['inv_flag'])} it, and the flagship is {side} "
            f"(flagship / MACE {span(by['flag_mace'])}).")


def cutoff_table(results: dict[str, Any], cutoff: float) -> str:
    runs = results["runs"]
    rows = []
    for n, p in points(results).items():
        mace, flag, inv = (p[m] for m in MODELS)
        rows.append([n, mace, flag, inv, ratio(inv, mace), ratio(inv, flag), ratio(flag, mace),
                     *(_whole(runs.get(m, {}).get(str(n), {}).get("wall_s")) for m in MODELS)])
    return "\n".join([
        f"**Cutoff {cutoff:g} Å (all three models).** "
        "MACE, molsym's flagship (`model=default`) and the invariant baseline "
        "(`model=invariant`) on the aspirin learning-curve splits of "
        "[Data efficiency](#data-efficiency) (the same training frames, the same 50 validation "
        "frames and the same 250 test frames), every run making the same number of optimizer "
        f"steps at batch {BATCH_SIZE} ({results.get('max_steps')}), 1 thread a run, two runs at "
        "a time. MACE keeps its own recipe (Adam lr 0.01, EMA 0.99, E:F 1:100, "
        "ReduceLROnPlateau on the validation loss, validation every "
        f"{results.get('eval_interval')} epochs, the best validation checkpoint tested) and the "
        "CPU-sized model of the accuracy study (32x0e+32x1o, L=1, 2 layers, correlation 3, "
        "float32); molsym's models the study's protocol (cosine schedule over the run's steps, "
        "compiled, the best validation checkpoint tested). Force MAE in meV/Å; wall times "
        "include setup and test.", "",
        common.md_table(["N_train", "MACE", "molsym flagship", "invariant", "invariant / MACE",
                         "invariant / flagship", "flagship / MACE", "MACE wall (s)",
                         "flagship wall (s)", "invariant wall (s)"], rows), "",
        verdict(results, cutoff), "", "Commands:", "",
        *[f"- `{h['command']}`: {common.env_line(h['env']) if h.get('env') else ''}"
          for h in history(results)],
    ])


def history(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The commands that made a cutoff's runs, each with its environment (oldest first)."""
    return entry.get("history") or [{"command": entry.get("command"), "env": entry.get("env")}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 250, 500, 950])
    parser.add_argument("--max-steps", type=int, default=12000,
                        help="optimizer steps per run (the aspirin study's)")
    parser.add_argument("--eval-interval", type=int, default=10,
                        help="MACE validation every this many epochs")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="wall-clock cap per run (default: none)")
    parser.add_argument("--cutoff", type=float, default=5.0,
                        help="radial cutoff of all three models, Angstrom")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="N=25, 20 steps")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    name = RESULT + ("_quick" if args.quick else "")
    if args.quick:
        args.sizes, args.max_steps, args.eval_interval = [25], 20, 1
    results = common.load_result(name) or {}
    results.setdefault("cutoffs", {})
    if not args.report_only:
        if not mace_peer.available():
            print("mace-torch venv not found (peers/mace): nothing to run", file=sys.stderr)
            return 1
        this = results["cutoffs"].setdefault(str(args.cutoff), {"runs": {}})
        if this.get("max_steps") not in (None, args.max_steps):
            this["runs"] = {}
        command = "python -m scripts.benchmarks.data_efficiency_mace " + " ".join(
            argv if argv is not None else sys.argv[1:])
        env = common.environment(peers=("mace",), threads=1)
        this.update(max_steps=args.max_steps, eval_interval=args.eval_interval)
        this["history"] = [h for h in history(this) if h.get("command") not in (None, command)]
        this["history"].append({"command": command, "env": env})
        lock = threading.Lock()
        root = common.RUNS / name / f"aspirin-steps{args.max_steps}"
        if args.cutoff != 5.0:
            root = root.with_name(f"{root.name}-cutoff{args.cutoff:g}")

        def one(task: tuple[str, int]) -> None:
            model, n = task
            out = root / model / str(n)
            if model == "mace":
                res = run_mace(out, n, args.max_steps, args.eval_interval, args.budget_s,
                               args.cutoff)
            else:
                res = run_molsym(out, model, n, args.max_steps, args.budget_s, args.cutoff)
            with lock:  # another cutoff's run may have saved meanwhile: keep its entry
                this["runs"].setdefault(model, {})[str(n)] = res
                results["cutoffs"] = (common.load_result(name) or {}).get("cutoffs", {})
                results["cutoffs"][str(args.cutoff)] = this
                common.save_result(name, results)

        tasks = [(m, n) for m in MODELS for n in args.sizes]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            for fut in [ex.submit(one, t) for t in tasks]:
                fut.result()
    text = report(results)
    if not args.quick:
        common.write_section(HEADING, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
