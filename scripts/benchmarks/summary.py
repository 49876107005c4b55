"""Write the summary table at the top of docs/benchmarks.md from the stored study results
(scripts/benchmarks/results/*.json) and the Model speed section (scripts/benchmarks/bench_model.py).

    python -m scripts.benchmarks.summary
"""

from __future__ import annotations

from typing import Any

from scripts.benchmarks import common, long_run
from scripts.benchmarks import flagship_vs_mace as fvm
from scripts.benchmarks.accuracy import PUBLISHED
from scripts.benchmarks.data_efficiency import (
    BASE_STUDY,
    OPTIONAL_STUDIES,
    STUDY_OVERRIDES,
    SUMMARY_LABELS,
    better_of_ratios,
    curve_ratios,
    study_settings,
)
from scripts.benchmarks.data_efficiency_mace import points as mace_points
from scripts.benchmarks.data_efficiency_mace import verdict as mace_verdict


def _mae(run: dict[str, Any] | None, key: str) -> float | None:
    return ((run or {}).get("metrics") or {}).get(key, {}).get("mae")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}g}"


#: trained peers of the accuracy study: (key in results/accuracy.json, label)
PEERS = (("mace", "MACE"), ("nequip", "NequIP"), ("schnetpack", "SchNetPack (PaiNN)"))


def accuracy_rows() -> list[list[str]]:
    res = common.load_result("accuracy")
    if res is None:
        return [["Accuracy (rMD17)", "not run", "", "", ""]]
    rows = []
    for mol, r in res["molecules"].items():
        minutes = r.get("budget_min", res.get("budget_min"))
        budget = f"{minutes:g} min CPU each"
        for key, what in (("forces", "force MAE (meV/Å)"), ("energy", "energy MAE (meV)")):
            ms = _mae(r.get("molsym"), key)
            for peer, label in PEERS:
                if peer not in r:
                    continue
                other = _mae(r.get(peer), key)
                note = "lower is better; ratio > 1: molsym behind"
                if key == "energy":
                    note += ("; molsym refits its per-element energy shifts after training, the "
                             "peers do not (see Accuracy)")
                rows.append([f"Accuracy: {mol} {what}", _f(ms), f"{label} {_f(other)} ({budget})",
                             _ratio(ms, other), note])
        ms = _mae(r.get("molsym"), "forces")
        for peer, val in PUBLISHED.get(mol, {}).items():
            if peer in ("MACE", "NequIP"):
                rows.append([f"Accuracy: {mol} force MAE vs published", _f(ms),
                             f"{peer} {val} (published, converged on GPU)", _ratio(ms, val),
                             f"molsym: {minutes:g} min of CPU, not converged"])
    return rows


def protocol_words(res: dict) -> str:
    """How the data-efficiency runs were budgeted (equal steps or equal time per run)."""
    proto = res.get("protocol") or {}
    if proto.get("max_steps") or proto.get("qm9_max_steps"):
        return (f"equal optimizer steps per run ({proto.get('max_steps')} rMD17, "
                f"{proto.get('qm9_max_steps')} QM9; LR schedule rMD17 "
                f"{proto.get('schedule', 'plateau')}, QM9 {proto.get('qm9_schedule', 'plateau')}, "
                f"the same for both models)")
    return "equal time per run"


def data_rows() -> list[list[str]]:
    res = common.load_result("data_efficiency")
    if res is None:
        return [["Data efficiency", "not run", "", "", ""]]
    rows = []
    for study, label in SUMMARY_LABELS.items():
        runs = res["runs"].get(study)
        if study in OPTIONAL_STUDIES and not runs:
            continue
        if not runs or "flagship" not in runs or "invariant" not in runs:
            rows.append([f"Data efficiency: {label}", "not run", "", "", ""])
            continue
        ns, ratios, sf, si = curve_ratios(res, study)
        spread = f"{min(ratios.values()):.2f}-{max(ratios.values()):.2f}" if ratios else "–"
        rows.append([f"Data efficiency: {label}, N={ns[0]}..{ns[-1]}",
                     f"slope {_f(sf, 2)}", f"invariant baseline: slope {_f(si, 2)}",
                     f"invariant/flagship MAE {spread}",
                     "target >= 3x lower error than invariant; " + protocol_words(res)])
    return rows


def _mace_cutoffs() -> list[tuple[float, dict[str, Any]]]:
    """(cutoff, entry) of results/data_efficiency_mace.json, larger cutoffs first."""
    res = common.load_result("data_efficiency_mace") or {}
    return sorted(((float(c), e) for c, e in res.get("cutoffs", {}).items()), reverse=True)


def mace_data_rows() -> list[list[str]]:
    """MACE, the flagship and the invariant model on the same aspirin splits and steps."""
    rows = []
    for cutoff, entry in _mace_cutoffs():
        for n, p in mace_points(entry).items():
            rows.append([
                f"Data efficiency vs MACE: aspirin force MAE (meV/Å), N={n}, {cutoff:g} Å, "
                f"{entry.get('max_steps')} steps each", _f(p["flagship"]),
                f"MACE {_f(p['mace'])}", _ratio(p["flagship"], p["mace"]),
                f"invariant / MACE {_ratio(p['invariant'], p['mace'])}, invariant / flagship "
                f"{_ratio(p['invariant'], p['flagship'])} (target 3); same splits and steps "
                "for all three"])
    return rows


def speed_rows() -> list[list[str]]:
    body = common.read_section("Model speed")
    lines = [ln[2:] for ln in (body or "").splitlines() if ln.startswith("- molsym flagship /")]
    if not lines:
        return [["Speed", "see [Model speed](#model-speed)", "", "", "not measured yet"]]
    return [["Speed (scripts/benchmarks/bench_model.py)", "", "", ln,
             "speed-up: x > 1 means molsym is faster; quoted from [Model speed](#model-speed)"]
            for ln in lines]


def train_speed_rows() -> list[list[str]]:
    """``molsym train`` end to end against each peer's trainer (bench_train)."""
    res = common.load_result("train_speed") or {}
    results, speedup = res.get("results") or {}, res.get("speedup") or {}
    ours = (results.get("molsym") or {}).get("conf_per_s")
    rows = []
    for peer, name in (("nequip", "nequip-train"), ("schnetpack", "SchNetPack"),
                       ("mace", "mace_run_train")):
        theirs = (results.get(peer) or {}).get("conf_per_s")
        if not ours or not theirs:
            continue
        mode = " (compiled)" if peer == "nequip" and res.get("nequip_compile") else ""
        rows.append([f"End-to-end training: aspirin conf/s, {name}{mode}", _f(ours),
                     f"{name} {_f(theirs)}", f"x{speedup.get(peer)}",
                     f"speed-up, x > 1: molsym faster; molsym step overhead outside the model "
                     f"{100 * res.get('overhead', float('nan')):.1f}% (target <= 15%); "
                     "[End-to-end training throughput](#end-to-end-training-throughput)"])
    return rows


#: the flagship_vs_mace variant of today's experiment=rmd17 recipe (2026-12-08: model=default's
#: more_scalars, radial floor and element-dependent mixing, the rank-3 density, Huber E:F
#: 100:1000 bent at 3 meV/A, lr 0.01) and the one it replaced (2026-12-07 night: the bend at
#: 10 meV/A)
DEFAULT_VARIANT, FORMER_DEFAULT = "rank3_d003", "species_rank3"


def equal_step_table(molecule: str) -> dict[str, dict[str, Any]]:
    """flagship_vs_mace's 3000-step runs of ``molecule``: {model name: {N: run}}."""
    return ((common.load_result(fvm.RESULT) or {}).get("runs") or {}).get(
        fvm.table_key(molecule, 3000), {})


def equal_step_pairs(molecule: str, variant: str) -> dict[int, tuple[float, float]]:
    """{N: (flagship force MAE, MACE force MAE)} of ``variant`` in flagship_vs_mace's 3000-step
    table of ``molecule``, where both ran."""
    runs = equal_step_table(molecule)
    mace = runs.get("mace", {})
    pairs = {int(n): (_mae(run, "forces"), _mae(mace.get(n), "forces"))
             for n, run in (runs.get(variant) or {}).items()}
    return {n: p for n, p in sorted(pairs.items()) if None not in p}


def seed_means(molecule: str, variant: str) -> dict[int, tuple[float, int, float, int]]:
    """{N: (flagship mean force MAE, its seeds, MACE mean force MAE, its seeds)} over the runs
    of ``variant`` and ``variant@sK`` (MACE: ``mace`` and ``mace@sK``) in flagship_vs_mace's
    3000-step table of ``molecule``, at each N where both ran more than one seed."""
    by_model: dict[str, dict[int, list[float]]] = {}
    for key, points in equal_step_table(molecule).items():
        parts = fvm.split_seed(key)
        if parts is None:
            continue
        for n, run in points.items():
            if (mae := _mae(run, "forces")) is not None:
                by_model.setdefault(parts[0], {}).setdefault(int(n), []).append(mae)
    ours, mace = by_model.get(variant, {}), by_model.get("mace", {})
    return {n: (sum(v) / len(v), len(v), sum(mace[n]) / len(mace[n]), len(mace[n]))
            for n, v in sorted(ours.items()) if len(v) > 1 and len(mace.get(n, [])) > 1}


def flagship_rows() -> list[list[str]]:
    """Flagship variants against MACE at equal steps (issue 19 §1), aspirin and ethanol, 3000
    steps: the current default's runs (seed 0), then the former default's, then the means
    over seeds where both models ran several."""
    rows = []
    for molecule in ("aspirin", "ethanol"):
        for variant, label in ((DEFAULT_VARIANT, "experiment=rmd17 today"),
                               (FORMER_DEFAULT, "recipe of 2026-12-07 night")):
            for n, (ours, theirs) in equal_step_pairs(molecule, variant).items():
                rows.append([f"Equal steps vs MACE: {molecule} force MAE (meV/Å), N={n}, "
                             f"{label}", _f(ours), f"MACE {_f(theirs)}", _ratio(ours, theirs),
                             "target <= 0.95; 3000 steps each; [Flagship variants vs MACE at "
                             "equal steps](#flagship-variants-vs-mace-at-equal-steps)"])
        for n, (ours, k, theirs, m) in seed_means(molecule, DEFAULT_VARIANT).items():
            rows.append([f"Equal steps vs MACE: {molecule} force MAE (meV/Å), N={n}, "
                         f"experiment=rmd17 today, mean of {k} seeds", _f(ours),
                         f"MACE {_f(theirs)} (mean of {m} seeds)", _ratio(ours, theirs),
                         "target <= 0.95; 3000 steps each; the seeds' spread is in [Flagship "
                         "variants vs MACE at equal steps](#flagship-variants-vs-mace-at-"
                         "equal-steps)"])
    return rows


#: issue 19 §3's target for the long aspirin run (test force MAE, meV/Angstrom)
LONG_RUN_TARGET = 9.0


def long_run_rows() -> list[list[str]]:
    """The long aspirin runs (``long_run``: about two hours on one core) against the published
    converged MACE and NequIP numbers."""
    rows = []
    for run in ((common.load_result("long_run") or {}).get("runs") or {}).values():
        ours = run["test"]["forces"]["mae"]
        pub = PUBLISHED["aspirin"]
        verdict = "met" if ours <= LONG_RUN_TARGET else "missed"
        hours = f"{long_run.chain_hours(run):.1f} h"
        if "continues" in run:
            hours += f" ({run['wall_s'] / 3600:.1f} h on from an earlier run)"
        rows.append([f"Accuracy: aspirin force MAE, {hours} on one CPU core", _f(ours),
                     f"MACE {pub['MACE']}, NequIP {pub['NequIP']} (published, converged on GPU)",
                     _ratio(ours, pub["MACE"]),
                     f"target <= {LONG_RUN_TARGET:g}: {verdict}; "
                     f"{run.get('total_epochs', run['epochs'])} epochs, "
                     f"recorded at molsym {(run.get('env') or {}).get('molsym_commit', '?')}; "
                     "[Accuracy: longer molsym runs](#accuracy-longer-molsym-runs-aspirin)"])
    return rows


def extrapolation_rows() -> list[list[str]]:
    res = common.load_result("extrapolation")
    if res is None:
        return [["Extrapolation", "not run", "", "", ""]]
    rows = []
    for key, label in (("acac", "acac 300 K -> test_MD_300K"), ("3bpa", "3BPA 300 K held out")):
        if key in res:
            ms, mace = _mae(res[key], "forces"), _mae(res.get(f"mace_{key}"), "forces")
            rows.append([f"Extrapolation: {label} force MAE (meV/Å)", _f(ms),
                         f"MACE {_f(mace)}" if mace else "no peer run", _ratio(ms, mace),
                         f"{res['budget_min']:g} min CPU training each"])
    for md in res.get("md", []):
        rows.append([f"NVE MD, acac at {md['temperature_K']:g} K",
                     f"{md['time_fs']:.0f} fs, {md['failure'] or 'no failure'}", "no peer run",
                     "–", f"max drift {md['max_drift_meV_per_atom']:.2g} meV/atom"])
    return rows


#: physics_vs_mace variants, newest model first: the summary shows the first one present
PHYSICS_VARIANTS = ("molsym_rank3", "molsym_species", "molsym_floor", "molsym_huber_more_lr01",
                    "molsym_huber_more", "molsym")


def physics_rows() -> list[list[str]]:
    """3BPA and ethanol physics against MACE at equal steps (``physics_vs_mace``), for the
    newest molsym variant of :data:`PHYSICS_VARIANTS` that ran."""
    res = (common.load_result("physics_vs_mace") or {}).get("tasks", {})
    rows = []
    for task, by_model in res.items():
        variant = next((v for v in PHYSICS_VARIANTS if by_model.get(v)), "molsym")
        ours, mace = by_model.get(variant) or {}, by_model.get("mace") or {}
        steps = (ours.get("train") or {}).get("steps")
        for label, metrics in (ours.get("tests") or {}).items():
            a = (metrics.get("forces") or {}).get("rmse")
            b = (((mace.get("tests") or {}).get(label) or {}).get("forces") or {}).get("rmse")
            rows.append([f"Physics vs MACE: {task} {label}, force RMSE (meV/Å)", _f(a),
                         f"MACE {_f(b)}", _ratio(a, b), f"equal steps ({steps}), {variant}"])
        for label, groups in (ours.get("curves") or {}).items():
            theirs = (mace.get("curves") or {}).get(label) or {}
            for group, c in groups.items():
                other = (theirs.get(group) or {}).get("rmse")
                name = label if len(groups) == 1 else f"{label} {group}"
                rows.append([f"Physics vs MACE: ethanol {name}, energy RMSE (meV)",
                             _f(c["rmse"]), f"MACE {_f(other)}", _ratio(c["rmse"], other),
                             f"{variant}, extra minima {c['extra_minima']}"
                             + (f", hole {c['short_range_hole']}"
                                if "short_range_hole" in c else "")])
    return rows


def active_learning_rows() -> list[list[str]]:
    """``molsym learn`` against random MD frames at equal labels (``active_learning``)."""
    rows = []
    for name in ("active_learning", "active_learning_ethylammonium"):
        res = common.load_result(name)
        if not res or not (res.get("active") or {}).get("rounds"):
            continue
        last = res["active"]["rounds"][-1]
        biggest = res["random"][-1]
        f_learn = _mae({"metrics": last.get("test_500K")}, "forces")
        f_random = _mae({"metrics": biggest.get("test_500K")}, "forces")
        rows.append([f"Active learning {res['smiles']}: force MAE 500 K (meV/Å)",
                     f"{_f(f_learn)} with {last['labels']} labels",
                     f"random MD frames {_f(f_random)} with {biggest['labels']} labels",
                     _ratio(f_learn, f_random), "target: the random recipe's largest-budget "
                     "error with at most 300 labels"])
    return rows


def symmetry_rows() -> list[list[str]]:
    res = common.load_result("symmetry")
    if res is None:
        return [["Symmetry", "not run", "", "", ""]]
    by = {(r["model"], r["dtype"]): r for r in res["rows"]}
    control = "control: MLP on coordinates + O(3) augmentation"
    short = {"SchNetPack PaiNN": "PaiNN", control: "augmented MLP"}

    def others(dtype: str) -> str:
        """Peers and the control at ``dtype``: '<name> <max force deviation>', ..."""
        return ", ".join(f"{short.get(model, model)} {_f(r['forces_meV_per_A'], 2)}"
                         for (model, d), r in by.items()
                         if d == dtype and not model.startswith("molsym"))

    rows = []
    for (model, dtype), r in by.items():
        if model.startswith("molsym"):
            rows.append([f"Symmetry: {model} {dtype}, max force deviation (meV/Å)",
                         _f(r["forces_meV_per_A"], 2), others(dtype), "–",
                         "built-in vs learned symmetry"])
    return rows


def weights_note(mol: str) -> str:
    """A caveat when molsym's loss weights differed from MACE's 1:100 in that run."""
    settings = common.run_settings(common.RUNS / "accuracy" / mol / "molsym")
    if settings is None or settings.startswith("E:F 1:100"):
        return ""
    return f" Not like for like: molsym ran with {settings}, MACE with E:F 1:100."


def flagship_verdicts() -> list[str]:
    """Where the current default meets flagship / MACE <= 0.95 at equal steps, per molecule."""
    out = []
    for molecule in ("aspirin", "ethanol"):
        ratios = {n: a / b for n, (a, b) in equal_step_pairs(molecule, DEFAULT_VARIANT).items()}
        if not ratios:
            continue
        met = [n for n, r in ratios.items() if r <= 0.95]
        if not met:
            where = "missed at every N."
        elif len(met) == len(ratios):
            where = "met at every N."
        else:
            where = f"met at N = {', '.join(map(str, met))}, missed elsewhere."
        out.append(f"Equal steps vs MACE, {molecule} (3000 steps, {DEFAULT_VARIANT}): flagship / "
                   f"MACE force MAE {min(ratios.values()):.2f}-{max(ratios.values()):.2f} over "
                   f"N = {', '.join(map(str, ratios))}; the 0.95 target is {where}")
    return out


def verdicts() -> list[str]:
    """Plain statements derived from the stored numbers (where molsym is ahead or behind)."""
    out = flagship_verdicts()
    acc = common.load_result("accuracy")
    for mol, r in (acc or {}).get("molecules", {}).items():
        ms = _mae(r.get("molsym"), "forces")
        for peer, label in PEERS:
            other = _mae(r.get(peer), "forces")
            if not (ms and other):
                continue
            word = "lower" if ms < other else "higher"
            out.append(f"Accuracy, {mol}, equal wall time: molsym's force MAE is {word} than "
                       f"{label}'s ({ms:.3g} vs {other:.3g} meV/Å, ratio {ms / other:.2f}); all "
                       "are short, unconverged trainings, so this mixes accuracy with "
                       "training speed." + (weights_note(mol) if peer == "mace" else ""))
        pub = PUBLISHED.get(mol, {}).get("MACE")
        if ms and pub:
            out.append(f"Accuracy, {mol}, against converged published numbers: molsym is "
                       f"behind ({ms:.3g} vs MACE's {pub} meV/Å, {ms / pub:.1f}x); a converged "
                       "molsym run (GPU, hours) has not been done, so its final accuracy is "
                       "unknown.")
    de = common.load_result("data_efficiency")
    for study, runs in ((de or {}).get("runs") or {}).items():
        if "flagship" not in runs or "invariant" not in runs:
            continue
        _, ratios, sf, si = curve_ratios(de, study)
        steeper = sf is not None and si is not None and sf < si
        met = bool(ratios) and min(ratios.values()) >= 3 and steeper
        at = [n for n, r in ratios.items() if r >= 3]
        where = (f"; >= 3x at N = {', '.join(map(str, at))}, below at N = "
                 f"{', '.join(str(n) for n in ratios if n not in at)}"
                 if at and not met else "")
        out.append(f"Data efficiency, {study}: target (flagship >= 3x lower error than the "
                   f"invariant baseline at every N, steeper slope) {'met' if met else 'NOT met'}"
                   f" in these runs, {protocol_words(de)} (ratios "
                   f"{_f(min(ratios.values()) if ratios else None)}-"
                   f"{_f(max(ratios.values()) if ratios else None)}{where}, slopes "
                   f"{_f(sf, 2)} vs {_f(si, 2)}).")
        base = BASE_STUDY.get(study)
        if study in STUDY_OVERRIDES and base in de["runs"]:
            both = better_of_ratios(de, [base, study])
            out.append(f"Data efficiency, {study} ({' '.join(study_settings(study))}): with "
                       f"each model at its lower error of {base} and {study}, the ratios are "
                       f"{_f(min(both.values()))}-{_f(max(both.values()))}; the settings change "
                       f"the baseline too, so read both.")
    out += [f"Data efficiency vs MACE: {v}" for v in
            (mace_verdict(entry, cutoff) for cutoff, entry in _mace_cutoffs()) if v]
    return out


def not_run() -> str:
    """Names of the planned pieces without results."""
    missing = []
    acc = (common.load_result("accuracy") or {}).get("molecules", {})
    if "ethanol" not in acc or "mace" not in acc.get("ethanol", {}):
        missing.append("rMD17 ethanol (molsym vs MACE)")
    missing += ["the published 3BPA 600 K / 1200 K test sets (not in the data folder; "
                "the mixed-temperature set stands in)",
                "QM9 beyond 10,000 training molecules"]
    return ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]


def main() -> int:
    rows = (accuracy_rows() + long_run_rows() + data_rows() + mace_data_rows()
            + flagship_rows() + speed_rows()
            + train_speed_rows() + extrapolation_rows()
            + physics_rows() + active_learning_rows() + symmetry_rows())
    table = common.md_table(["study", "molsym", "peer / reference", "ratio (molsym / peer)",
                              "note"], rows)
    body = "\n".join([
        "## Summary", "",
        f"Generated {common.now()} by `python -m scripts.benchmarks.summary` from "
        "`scripts/benchmarks/results/*.json`. All molsym and peer numbers below were measured "
        "on a 2-core CPU (no GPU was available), each run on one core, with short budgets "
        "(wall-clock for the accuracy and extrapolation studies, optimizer steps for the "
        "data-efficiency curves); the dates and machine loads of each study are in its "
        "section. Published numbers are quoted, not re-run; "
        f"{not_run()} were not run. Ratios are molsym / peer errors: below 1, molsym is "
        "ahead.", "", table, "",
        *[f"- {v}" for v in verdicts()], ""])
    common.write_summary(body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
