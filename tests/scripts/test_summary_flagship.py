"""The summary's equal-step rows against MACE (issue 19, §1): seed 0 against MACE's seed 0,
and the means over seeds where both models ran more than one."""

from __future__ import annotations

from scripts.benchmarks import summary


def _run(forces):
    return {"metrics": {"forces": {"mae": forces}, "energy": {"mae": 1.0}}}


def test_seed_means_pair_the_seeds_of_both_models_at_each_size(monkeypatch):
    variant = summary.DEFAULT_VARIANT
    table = {
        "mace": {"25": _run(80.0), "50": _run(58.0)},
        "mace@s1": {"25": _run(82.0)},
        "mace@s2": {"25": _run(72.0)},
        variant: {"25": _run(78.0), "50": _run(50.0)},
        f"{variant}@s1": {"25": _run(86.0), "50": _run(52.0)},
        f"{variant}_other": {"25": _run(1.0)},  # another variant, not a seed of this one
        f"{variant}@sx": {"25": _run(1.0)},  # no seed number: not a seed either
    }
    monkeypatch.setattr(summary.common, "load_result", lambda name: {
        "runs": {"aspirin, 3000 steps": table}} if name == "flagship_vs_mace" else None)
    means = summary.seed_means("aspirin", variant)
    assert means == {25: (82.0, 2, 78.0, 3)}  # N=50: MACE has one seed only
    rows = [r for r in summary.flagship_rows() if "mean of" in r[0]]
    assert len(rows) == 1 and rows[0][1] == "82" and "3 seeds" in rows[0][2]
    assert rows[0][3] == summary._ratio(82.0, 78.0)
