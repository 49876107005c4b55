"""``report.md`` of a ``molsym learn`` run, with three PNGs: labels per round, the
committee's disagreement on each round's MD, and the validation error against labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from molsym.atomic import atomic_path, write_text_atomic
from molsym.learning.settings import LoopSettings


def _spreads(run_dir: Path, k: int) -> list[float]:
    path = run_dir / "rounds" / str(k) / "explore.json"
    if not path.is_file():
        return []
    values = [s for traj in json.loads(path.read_text()).get("spreads", []) for s in traj]
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def _test_forces(record: dict) -> float | None:
    """The committee's force MAE on its test split, in eV/Angstrom (metrics.json: meV)."""
    forces = (record.get("test_metrics") or {}).get("forces")
    if not forces:
        return None
    return float(forces["mae"]) * (1e-3 if str(forces.get("unit", "")).startswith("meV") else 1)


def _thresholds(rounds: list[dict], default: float) -> list[tuple[int, float]]:
    """(round, selection threshold in eV/Angstrom) of each explored round."""
    return [(r["round"], float((r.get("exploration") or {}).get("threshold", default)))
            for r in rounds if r["round"] > 0]


def _plots(run_dir: Path, rounds: list[dict], threshold: float) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    ks = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.bar(ks, [r.get("labelled", 0) for r in rounds], label="new labels")
    ax.plot(ks, [r.get("labels_total", 0) for r in rounds], "o-", color="C1", label="total")
    ax.set_xlabel("round")
    ax.set_ylabel("labels")
    ax.legend()
    names.append(_save(fig, run_dir / "labels_per_round.png"))

    explored = [(r["round"], _spreads(run_dir, r["round"])) for r in rounds if r["round"] > 0]
    explored = [(k, v) for k, v in explored if v]
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    if explored:
        ax.boxplot([np.maximum(v, 1e-4) for _, v in explored],
                   positions=[k for k, _ in explored], whis=(0, 100))
        ax.set_yscale("log")
    per_round = _thresholds(rounds, threshold)
    if per_round:
        ax.plot(*zip(*per_round, strict=True), "_", color="C3", ms=20, mew=2,
                label="threshold of the round")
    else:
        ax.axhline(threshold, color="C3", ls="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("round (MD with the previous committee)")
    ax.set_ylabel("largest force spread (eV/Angstrom)")
    ax.legend()
    names.append(_save(fig, run_dir / "disagreement_per_round.png"))

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    tested = [(r["labels_total"], _test_forces(r)) for r in rounds if _test_forces(r)]
    if tested:
        ax.plot(*zip(*tested, strict=True), "o-", label="test split of the labels")
    fresh = [(r["labels_total"] - r.get("labelled", 0), r["fresh_errors"]["forces_mae"])
             for r in rounds if (r.get("fresh_errors") or {}).get("count")]
    if fresh:
        ax.plot(*zip(*fresh, strict=True), "s--", label="next round's new labels")
    ax.set_xlabel("labels the committee was trained on")
    ax.set_ylabel("force MAE (eV/Angstrom)")
    if tested or fresh:
        ax.legend()
    names.append(_save(fig, run_dir / "validation_error.png"))
    return names


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path.name


def _row(r: dict) -> str:
    ex = r.get("exploration") or {}
    fresh = r.get("fresh_errors") or {}
    test = _test_forces(r)
    cells = [
        str(r["round"]), str(r.get("labelled", 0)), str(r.get("failed", 0)),
        str(r.get("labels_total", "")),
        f"{ex['threshold']:.3g}" if "threshold" in ex else "",
        f"{ex['above_threshold']}/{ex['sampled_frames']}" if ex else "",
        f"{ex['spread_median']:.3g} / {ex['spread_max']:.3g}" if ex else "",
        str(len(ex.get("explosions", []))) if ex else "",
        f"{fresh['forces_mae']:.3g}" if fresh.get("count") else "",
        f"{test:.3g}" if test is not None else "",
        ", ".join([f"{name} {r[x]:.0f} s" for x, name in (("oracle_seconds", "oracle"),
                                                          ("train_seconds", "training"))
                   if x in r] + ([f"MD {ex['md_seconds']:.0f} s"] if ex else [])),
    ]
    return "| " + " | ".join(cells) + " |"


def _threshold_rule(settings: LoopSettings) -> str:
    if settings.threshold_mode == "absolute":
        return f"threshold {settings.threshold:g} eV/Angstrom"
    return (f"threshold calibrated every round: a force error tolerance of "
            f"{settings.threshold:g} eV/Angstrom over the committee's error/spread ratio on "
            f"its labelled frames ({settings.threshold_quantile:g} quantiles)")


def write_report(run_dir: Path, rounds: list[dict], stop: str, settings: LoopSettings,
                 oracle: str) -> Path:
    """Write ``run_dir/report.md`` (and its PNGs); returns its path."""
    pngs = _plots(run_dir, rounds, settings.threshold)
    labels = rounds[-1].get("labels_total", 0) if rounds else 0
    lines = [
        "# molsym learn report", "",
        f"Stopped: {stop}.", "",
        f"Oracle `{oracle}`; {labels} labels (budget {settings.max_labels}); MD at "
        f"{settings.temperature:g} K, {settings.num_trajectories} trajectories of "
        f"{settings.md_steps} steps of {settings.timestep_fs:g} fs per round; "
        + _threshold_rule(settings) + " on the largest per-atom force spread.", "",
        "| round | new labels | failed | total | threshold (eV/A) | frames above threshold "
        "| spread median / max (eV/A) | explosions | force MAE on its new labels, previous "
        "committee (eV/A) | committee test force MAE (eV/A) | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in rounds), "",
        "The force MAE on a round's new labels is that of the committee before the round, "
        "on frames picked where it disagreed most: a pessimistic, out-of-sample number. The "
        "test split is a random share of all labels so far.", "",
        *(f"![{name}]({name})" for name in pngs), "",
    ]
    explosions = [(r["round"], e) for r in rounds
                  for e in (r.get("exploration") or {}).get("explosions", [])]
    if explosions:
        lines += ["## Explosions (trajectory stopped, restarted from a labelled frame)", ""]
        lines += [f"- round {k}, trajectory {e['trajectory']}, step {e['step']}: {e['reason']}"
                  for k, e in explosions] + [""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
