"""Data efficiency: learning curves of molsym's flagship vs the invariant baseline.

rMD17 aspirin (force MAE on 250 frames of test_01, every 4th) and QM9 (U0 and HOMO MAE on 1000
held-out molecules), N_train nested (each training set contains the smaller ones), the same
validation set for every N, and a fixed wall-clock budget per run. Slopes are least-squares
fits of log(MAE) against log(N).

    python -m scripts.benchmarks.data_efficiency                  # the documented run
    python -m scripts.benchmarks.data_efficiency --quick          # CI-sized check
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from scripts.benchmarks import common

ASPIRIN_TEST_EVERY = 4  # test on every 4th frame of test_01 (250 frames): halves a run's cost
MODELS = {"flagship": "default", "invariant": "invariant"}
#: studies whose models are not :data:`MODELS`: "aspirin_large" trains the flagship at the
#: invariant baseline's width and depth (model=large: 64 channels, 3 layers), "aspirin_cut4_full"
#: the flagship with full_paths (model=full_paths)
STUDY_MODELS = {"aspirin_large": {"flagship": "large", "invariant": "invariant"},
                "aspirin_cut4_full": {"flagship": "full_paths", "invariant": "invariant"}}
#: extra ``molsym train`` overrides of a study, for both of its models: the "_cut4" studies
#: are their base study (:data:`BASE_STUDY`) with a 4 Angstrom cutoff instead of 5
#: ("aspirin_cut4_full": and its flagship model, above)
STUDY_OVERRIDES = {"aspirin_cut4": ["cutoff=4.0"], "qm9_u0_cut4": ["cutoff=4.0"],
                   "qm9_homo_cut4": ["cutoff=4.0"], "aspirin_cut4_full": ["cutoff=4.0"]}
#: study -> the study it varies (same data, splits and test set)
BASE_STUDY = {"aspirin_large": "aspirin", "aspirin_cut4": "aspirin", "qm9_u0_cut4": "qm9_u0",
              "qm9_homo_cut4": "qm9_homo", "aspirin_cut4_full": "aspirin"}
#: study -> (metric key in metrics.json, label, unit)
STUDIES = {"aspirin": ("forces", "rMD17 aspirin force MAE", "meV/Å"),
           "aspirin_large": ("forces", "rMD17 aspirin force MAE, flagship at the invariant "
                             "model's width and depth (model=large)", "meV/Å"),
           "aspirin_cut4": ("forces", "rMD17 aspirin force MAE, cutoff 4 Å for both models",
                            "meV/Å"),
           "aspirin_cut4_full": ("forces", "rMD17 aspirin force MAE, cutoff 4 Å for both "
                                 "models, flagship with full_paths (model=full_paths)", "meV/Å"),
           "qm9_u0": ("energy", "QM9 U0 MAE", "meV"),
           "qm9_homo": ("homo", "QM9 HOMO MAE", "meV"),
           "qm9_u0_cut4": ("energy", "QM9 U0 MAE, cutoff 4 Å for both models", "meV"),
           "qm9_homo_cut4": ("homo", "QM9 HOMO MAE, cutoff 4 Å for both models", "meV")}
#: study -> its label in the summary table (summary.py)
SUMMARY_LABELS = {"aspirin": "aspirin force MAE",
                  "aspirin_large": "aspirin force MAE, flagship model=large",
                  "aspirin_cut4": "aspirin force MAE, cutoff 4 Å (both models)",
                  "aspirin_cut4_full": "aspirin force MAE, cutoff 4 Å, flagship full_paths",
                  "qm9_u0": "QM9 U0 MAE", "qm9_homo": "QM9 HOMO MAE",
                  "qm9_u0_cut4": "QM9 U0 MAE, cutoff 4 Å (both models)",
                  "qm9_homo_cut4": "QM9 HOMO MAE, cutoff 4 Å (both models)"}
#: studies the summary leaves out, instead of saying "not run", when they have no results:
#: the variations of a base study
OPTIONAL_STUDIES = set(BASE_STUDY)


def study_settings(study: str) -> list[str]:
    """What a study changes against :data:`MODELS` with no overrides: its overrides, then the
    flagship model config when it is not the default (e.g. ``["cutoff=4.0",
    "model=full_paths"]``)."""
    flagship = STUDY_MODELS.get(study, MODELS)["flagship"]
    return [*STUDY_OVERRIDES.get(study, []),
            *([f"model={flagship}"] if flagship != MODELS["flagship"] else [])]


def split_file(path: Path, n_pool: int, n_train: int, n_val: int, test: list[int] | None,
               test_source: str, seed: int = 0) -> Path:
    """Nested split: val = first n_val of a seeded permutation, train = next n_train."""
    perm = np.random.default_rng(seed).permutation(n_pool).tolist()
    n_test = 0 if test is not None else 1000
    held = set(perm[:n_test])
    rest = [i for i in perm if i not in held]
    data = {"train": sorted(rest[n_val:n_val + n_train]), "val": sorted(rest[:n_val]),
            "test": test if test is not None else sorted(held), "test_source": test_source,
            "seed": seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) + "\n")
    return path


#: learning-rate schedules of the study. "plateau": the experiment's ReduceLROnPlateau (its
#: patience counts epochs, so a small training set decays the rate after fewer steps) and
#: early stopping; "cosine": warm-up + cosine decay over the run's optimizer steps, the same
#: per step at every N, no early stopping (the best validation checkpoint is tested).
SCHEDULES = ("plateau", "cosine")


def protocol_overrides(max_steps: int | None, compile_model: bool,
                       schedule: str = "plateau") -> list[str]:
    """Equal optimizer steps for every run (epochs unbounded), torch.compile on request, and
    the learning-rate schedule (see :data:`SCHEDULES`; "cosine" needs ``max_steps``)."""
    out = [] if max_steps is None else [f"trainer.max_steps={max_steps}",
                                        "trainer.max_epochs=1000000"]
    if schedule == "cosine":
        if max_steps is None:
            raise ValueError("the cosine schedule needs max_steps (the decay spans the run)")
        out += ["scheduler=cosine", f"scheduler.total_steps={max_steps}",
                "callbacks.early_stopping.patience=1000000"]
    return out + (["module.compile=true"] if compile_model else [])


def last_wins(ovs: list[str]) -> list[str]:
    """Hydra overrides with each key once, at its last occurrence (Hydra's own rule for
    repeated keys; ``+key`` counts as ``key``), so a protocol setting replaces a study's."""
    seen: set[str] = set()
    out = []
    for o in reversed(ovs):
        key = o.split("=", 1)[0].lstrip("+")
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out[::-1]


#: rMD17 molecules a study may be named after ("aspirin", "aspirin_cut4", "ethanol", ...): the
#: same split protocol (1000-frame pool of train_01, every 4th frame of test_01) for each
RMD17_MOLECULES = ("aspirin", "ethanol")


def rmd17_molecule(study: str) -> str | None:
    """The rMD17 molecule of a study (its name up to the first "_"), None for QM9 studies."""
    head = study.split("_", 1)[0]
    return head if head in RMD17_MOLECULES else None


def overrides(study: str, model: str, n: int, out: Path, qm9_pool: int,
              protocol: list[str] = ()) -> list[str]:
    """``molsym train`` overrides of one run (see :func:`last_wins`)."""
    return last_wins(_study_overrides(study, model, n, out, qm9_pool, list(protocol)))


def _study_overrides(study: str, model: str, n: int, out: Path, qm9_pool: int,
                     protocol: list[str]) -> list[str]:
    protocol = [*STUDY_OVERRIDES.get(study, []), *protocol]
    molecule = rmd17_molecule(study)
    if molecule:
        test = list(range(0, 1000, ASPIRIN_TEST_EVERY))
        split = split_file(out / "split.json", 1000, n, 50, test, "test_path")
        return ["experiment=rmd17", f"data.molecule={molecule}", f"data_root={common.DATA}",
                f"model={model}", f"+data.split_file={split}", "seed=0",
                *common.EXPERIMENT_OVERRIDES["rmd17"], *protocol]
    target = STUDIES[study][0]
    split = split_file(out / "split.json", qm9_pool, n, 500, None, "path")
    return ["data=extxyz", f"data.path={qm9_pool_file(qm9_pool)}", f"targets=[{target}]",
            f"model={model}", f"data.split_file={split}", "model.elements=[1,6,7,8]",
            "data.batch_size=32", "data.eval_batch_size=128", "scheduler=plateau", "seed=0",
            *([] if any(o.startswith("trainer.max_epochs") for o in protocol)
              else ["trainer.max_epochs=300"]), *protocol]


def qm9_pool_file(n_pool: int) -> Path:
    """The first ``n_pool`` fluorine-free QM9 molecules (qm9pack) as extxyz with U0 as
    ``energy`` (eV) and ``homo`` (eV); written once under runs/benchmarks/."""
    import ase
    import ase.io

    from molsym.data.readers import read_qm9

    path = common.RUNS / f"qm9_noF_first{n_pool}.extxyz"
    if path.is_file():
        return path
    mols = [a for a in read_qm9(max_molecules=n_pool + n_pool // 5 + 200)
            if 9 not in a.numbers][:n_pool]
    out = []
    for a in mols:
        b = ase.Atoms(a.numbers, a.positions)
        b.info.update(energy=float(a.info["energy"]), homo=float(a.info["homo"]))
        out.append(b)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, out, format="extxyz")
    return path


def describe_runs(results: dict[str, Any], name: str) -> None:
    """Set env date/load to the span of the collected runs (file times, mean loads)."""
    from datetime import datetime, timezone

    files = [Path(r["model"]).parent / "metrics.json" for runs in results["runs"].values()
             for model in runs.values() for r in model.values() if r.get("model")]
    times = sorted(p.stat().st_mtime for p in files if p.is_file())
    loads = [r["mean_load"] for runs in results["runs"].values() for model in runs.values()
             for r in model.values() if r.get("mean_load") is not None]
    if times:
        fmt = [datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M") for t in
               (times[0], times[-1])]
        results["env"]["date"] = f"{fmt[0]} to {fmt[1]} UTC (run end times)"
    if loads:
        results["env"]["load_avg_1min"] = f"{min(loads):g}-{max(loads):g} (per-run means)"


def fit_slope(ns: list[int], maes: list[float]) -> float | None:
    """Slope of log(MAE) vs log(N) (least squares); None with fewer than two points."""
    pts = [(n, m) for n, m in zip(ns, maes, strict=True) if m is not None and m > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def curve(runs: dict[str, Any], study: str, model: str) -> tuple[list[int], list[float | None]]:
    key = STUDIES[study][0]
    pts = sorted((int(n), r.get("metrics", {}).get(key, {}).get("mae"))
                 for n, r in runs[study][model].items())
    return [p[0] for p in pts], [p[1] for p in pts]


def curve_ratios(results: dict[str, Any], study: str) -> tuple[
        list[int], dict[int, float], float | None, float | None]:
    """Flagship sizes N, {N: invariant / flagship MAE} and both log-log slopes of a study."""
    ns, flag = curve(results["runs"], study, "flagship")
    ns_inv, inv = curve(results["runs"], study, "invariant")
    by_n = dict(zip(ns_inv, inv, strict=True))
    ratios = {n: by_n[n] / f for n, f in zip(ns, flag, strict=True) if f and by_n.get(n)}
    return ns, ratios, fit_slope(ns, flag), fit_slope(ns_inv, inv)


def better_of_ratios(results: dict[str, Any], studies: list[str]) -> dict[int, float]:
    """{N: invariant / flagship MAE} with each model at its lower error over ``studies`` (the
    same data and test frames run with different settings, e.g. two cutoffs)."""
    best: dict[str, dict[int, float]] = {"flagship": {}, "invariant": {}}
    for study in studies:
        for model, by_n in best.items():
            if model not in results["runs"].get(study, {}):
                continue
            for n, mae in zip(*curve(results["runs"], study, model), strict=True):
                if mae is not None:
                    by_n[n] = min(mae, by_n.get(n, mae))
    return {n: best["invariant"][n] / f for n, f in sorted(best["flagship"].items())
            if n in best["invariant"]}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    studies = [s for s in STUDIES if s in results["runs"]]
    ncols = min(2, len(studies))
    nrows = (len(studies) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(studies):]:
        ax.set_visible(False)
    for ax, study in zip(axes.flat, studies, strict=False):
        for model, color in (("flagship", "C0"), ("invariant", "C3")):
            if model not in results["runs"][study]:
                continue
            ns, maes = curve(results["runs"], study, model)
            slope = fit_slope(ns, maes)
            label = f"{model} (slope {slope:.2f})" if slope is not None else model
            ax.loglog(ns, maes, "o-", color=color, label=label)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("N_train")
        ax.set_ylabel(f"MAE ({STUDIES[study][2]})")
        ax.set_title(SUMMARY_LABELS[study], fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def schedule_words(schedule: str, patience: int) -> str:
    if schedule == "cosine":
        return ("100 warm-up steps, then cosine decay to 1% over the run's steps, no early "
                "stopping (the best validation checkpoint is tested)")
    return (f"ReduceLROnPlateau (x0.8 after 10 epochs without improvement, so it decays after "
            f"fewer steps the smaller N is) and early stopping after {patience} such epochs")


def param_count(runs: dict[str, Any]) -> int | None:
    """Trainable parameters of a model's runs (from one saved model file), None without one."""
    from molsym.deploy.model_file import load_model

    path = next((Path(r["model"]) for r in runs.values()
                 if r.get("model") and Path(r["model"]).is_file()), None)
    if path is None:
        return None
    return sum(p.numel() for p in load_model(path).parameters())


def study_commands(results: dict[str, Any]) -> list[str]:
    """The commands that made the reported runs, once each (older results: every command)."""
    by_study = results.get("study_commands") or {}
    made = [by_study[s] for s in STUDIES if s in by_study and s in results["runs"]]
    return list(dict.fromkeys(made)) or results.get("commands", [])


def commands_with_envs(results: dict[str, Any]) -> list[str]:
    """One line per command that made the reported runs, with the date, machine and versions
    of its runs (results without per-study environments: one shared line)."""
    envs = results.get("study_envs") or {}
    by_study = results.get("study_commands") or {}
    if not envs:
        return ["Commands: `" + "`; `".join(study_commands(results)) + "`. "
                + common.env_line(results["env"])]
    lines = []
    for command in study_commands(results):
        study = next((s for s, c in by_study.items() if c == command and s in envs), None)
        env = envs.get(study, results["env"])
        lines.append(f"- `{command}`: {common.env_line(env)}")
    return ["Commands:", "", *lines, ""]


def report(results: dict[str, Any]) -> str:
    steps = (results.get("protocol") or {}).get("max_steps")
    if steps or (results.get("protocol") or {}).get("qm9_max_steps"):
        qm9_steps = results["protocol"].get("qm9_max_steps")
        proto = results["protocol"]
        budget = (f"Every run makes the same number of optimizer steps, {steps} (rMD17, batch 5)"
                  f" and {qm9_steps} (QM9, batch 32), whatever N and "
                  f"the model (so this compares the models at equal data and equal steps, not "
                  f"at equal CPU time), with a wall-clock cap of "
                  f"{results.get('budget_s', 0):g} s (rMD17) / {results.get('qm9_budget_s', 0):g}"
                  f" s (QM9). Learning rate: rMD17 "
                  f"{schedule_words(proto.get('schedule', 'plateau'), 100)}; QM9 "
                  f"{schedule_words(proto.get('qm9_schedule', 'plateau'), 50)}. Training ran "
                  f"through torch.compile ({'on' if proto.get('compile') else 'off'}), 1 thread a "
                  f"run.")
    else:
        budget = (f"Fixed wall-clock budget per training run: {results.get('budget_s', 0):g} s "
                  f"(rMD17) and {results.get('qm9_budget_s', 0):g} s (QM9) on the CPU, so "
                  f"larger N gets fewer epochs: these curves compare the models at equal "
                  f"compute, not at convergence.")
    parts = [
        f"{budget} Nested "
        f"training sets, one validation set (50 frames of train_01; 500 QM9 molecules), test "
        f"on every {ASPIRIN_TEST_EVERY}th frame of rMD17 test_01 (250 frames) and on 1000 held-out "
        f"QM9 molecules. QM9 is drawn from the first "
        f"{results.get('qm9_pool')} fluorine-free molecules of qm9pack (the smaller molecules: "
        f"QM9 is ordered by size; F-containing molecules are left out so that every training set "
        f"covers every element), not the whole set. U0 is trained as `energy` with "
        f"least-squares atomic reference energies (`data=extxyz` on that file).", ""]
    for study in STUDIES:
        if study not in results["runs"]:
            continue
        runs = results["runs"][study]
        if "flagship" not in runs or "invariant" not in runs:
            continue
        ns, flag = curve(results["runs"], study, "flagship")
        by_n = dict(zip(*curve(results["runs"], study, "invariant"), strict=True))
        _, ratios, slope_flag, slope_inv = curve_ratios(results, study)
        rows = [[n, f, by_n.get(n), ratios.get(n),
                 runs["flagship"].get(str(n), {}).get("steps"),
                 runs["invariant"].get(str(n), {}).get("steps")]
                for n, f in zip(ns, flag, strict=True)]
        rows.append(["slope", slope_flag, slope_inv, None, None, None])
        budget = results.get("budgets_s", {}).get(study)
        proto = results.get("protocol") or {}
        steps = proto.get("max_steps" if study.startswith("aspirin") else "qm9_max_steps")
        if steps:
            extra = f", at most {steps} optimizer steps per run (wall-clock cap {budget:g} s)"
        else:
            extra = f", {budget:g} s per run" if budget else ""
        step_ratio = [r[5] / r[4] for r in rows[:-1] if r[4] and r[5]]
        loads = [r.get("mean_load") for m in runs.values() for r in m.values()
                 if r.get("mean_load") is not None]
        if loads:
            extra += f", mean machine load {np.median(loads):.1f} (median over runs)"
        settings = {common.run_settings(Path(r["model"]).parent)
                    for m in runs.values() for r in m.values() if r.get("model")} - {None}
        if settings and study.startswith("aspirin"):
            extra += f"; molsym settings: {' / '.join(sorted(settings))}"
        if step_ratio and not steps:
            extra += (f"; the invariant model made {np.median(step_ratio):.1f}x as many "
                      f"optimizer steps as the flagship in the same time (median)")
        walls = {m: [r.get("wall_s") for r in runs[m].values() if r.get("wall_s")]
                 for m in ("flagship", "invariant")}
        if steps and all(walls.values()):
            extra += ("; median wall time per run (compile, data and test included): flagship "
                      f"{np.median(walls['flagship']):.0f} s, invariant "
                      f"{np.median(walls['invariant']):.0f} s")
        sizes = {m: param_count(runs[m]) for m in ("flagship", "invariant")}
        if all(sizes.values()):
            extra += (f"; parameters: flagship {sizes['flagship']:,}, invariant "
                      f"{sizes['invariant']:,}")
        parts += [f"**{STUDIES[study][1]} ({STUDIES[study][2]}){extra}**", "",
                  common.md_table(["N_train", "flagship", "invariant", "invariant / flagship",
                                   "flagship steps", "invariant steps"], rows), ""]
        example = next((r.get("command") for r in runs["flagship"].values()), None)
        if example:
            parts += [f"One run of this table: `{example}`", ""]
    parts += ["![learning curves](img/data_efficiency.png)", "",
              *commands_with_envs(results),
              "Each point is one `molsym train` run with `model=default` (flagship; "
              "`model=large` in the model=large table) or `model=invariant`."]
    return "\n".join(parts)


def same_protocol(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``results`` without the runs that another protocol made for the studies about to run
    (step budget per study, compile); results of the old equal-time protocol are dropped
    whole. The stored protocol is updated for those studies."""
    old = results.get("protocol")
    if old is None:
        results = {"runs": {}}
        old = {}
    new = dict(old, compile=args.compile)
    for study in args.studies:
        key = "max_steps" if study.startswith("aspirin") else "qm9_max_steps"
        sched = "schedule" if study.startswith("aspirin") else "qm9_schedule"
        new[key] = args.max_steps if key == "max_steps" else args.qm9_max_steps
        new[sched] = args.schedule
        if (old.get(key) != new[key] or old.get("compile") != args.compile
                or old.get(sched, "plateau") != args.schedule):
            results["runs"].pop(study, None)
    results["protocol"] = new
    return results


def run_all(args: argparse.Namespace, name: str, results: dict[str, Any], pool: int) -> None:
    """Train (or collect) every (study, N, model) run, ``args.jobs`` at a time; the results
    file is rewritten after each finished run."""
    tasks = []
    for study in args.studies:
        sizes = args.sizes if study.startswith("aspirin") else args.qm9_sizes
        budget = args.budget_s if study.startswith("aspirin") else args.qm9_budget_s
        steps = args.max_steps if study.startswith("aspirin") else args.qm9_max_steps
        protocol = protocol_overrides(steps, args.compile, args.schedule)
        tasks += [(study, n, model, cfg, budget, protocol) for n in sizes
                  for model, cfg in STUDY_MODELS.get(study, MODELS).items()]
    lock = threading.Lock()

    def one(task: tuple[str, int, str, str, float, list[str]]) -> None:
        study, n, model, cfg, budget, protocol = task
        steps = next((o.split("=")[1] for o in protocol if o.startswith("trainer.max_steps")), "")
        folder = f"{study}-steps{steps}" if steps else study
        if args.schedule != "plateau":
            folder += f"-{args.schedule}"
        out = common.RUNS / name / folder / model / str(n)
        res = common.molsym_train(out, overrides(study, cfg, n, out, pool, protocol), budget,
                                  out.with_suffix(".log"), not args.collect)
        if "metrics" not in res:
            return
        with lock:
            results["runs"].setdefault(study, {}).setdefault(model, {})[str(n)] = res
            common.save_result(name, results)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for fut in [ex.submit(one, t) for t in tasks]:
            fut.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 250, 500, 950])
    parser.add_argument("--qm9-sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--budget-s", type=float, default=150,
                        help="wall-clock cap per run (the budget itself without --max-steps)")
    parser.add_argument("--qm9-budget-s", type=float, default=120)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="the same number of optimizer steps for every rMD17 run")
    parser.add_argument("--qm9-max-steps", type=int, default=None,
                        help="the same number of optimizer steps for every QM9 run")
    parser.add_argument("--compile", action="store_true", help="module.compile=true")
    parser.add_argument("--schedule", choices=SCHEDULES, default="plateau",
                        help="learning-rate schedule of the studies run now (see SCHEDULES)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 thread each)")
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--quick", action="store_true", help="two sizes, 30 s per run")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--collect", action="store_true",
                        help="rebuild the results from finished run folders, train nothing")
    args = parser.parse_args(argv)
    if args.schedule == "cosine":
        steps = {s: args.max_steps if s.startswith("aspirin") else args.qm9_max_steps
                 for s in args.studies}
        unbudgeted = [s for s, n in steps.items() if n is None]
        if unbudgeted:
            parser.error(f"--schedule cosine decays over each run's steps: give --max-steps "
                         f"(rMD17) / --qm9-max-steps (QM9) for {', '.join(unbudgeted)}")
    name = "data_efficiency_quick" if args.quick else "data_efficiency"
    if args.quick:
        args.sizes, args.qm9_sizes, args.budget_s, args.qm9_budget_s = [25, 50], [50, 100], 30, 30
        args.studies = ["aspirin", "qm9_homo"]
    results = common.load_result(name) if args.report_only else None
    if results is None:
        results = common.load_result(name) or {"runs": {}}
        results = same_protocol(results, args)
        pool = max(args.qm9_sizes) + 1500
        command = "python -m scripts.benchmarks.data_efficiency " + " ".join(
            argv if argv is not None else sys.argv[1:])
        if not args.collect:
            for study in args.studies:  # the command that made each study's current runs
                results.setdefault("study_commands", {})[study] = command
        for study in args.studies:
            results.setdefault("budgets_s", {})[study] = (
                args.budget_s if study.startswith("aspirin") else args.qm9_budget_s)
        if "aspirin" in args.studies:
            results["budget_s"] = args.budget_s
        if any(s.startswith("qm9") for s in args.studies):
            results.update({"qm9_budget_s": args.qm9_budget_s, "qm9_pool": pool})
        if not args.collect or "env" not in results:
            results["env"] = common.environment()
            for study in args.studies:  # the machine, date and commit of each study's runs
                results.setdefault("study_envs", {})[study] = results["env"]
        run_all(args, name, results, pool)
        if args.collect:
            describe_runs(results, name)
            common.save_result(name, results)
    plot(results, common.img_path("data_efficiency", args.quick))
    if not args.quick:
        common.write_section("Data efficiency", report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
