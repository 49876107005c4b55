"""The curve analysis of ``scripts/benchmarks/physics_vs_mace.py``: offsets, spurious minima
and short-range holes are told apart on Morse curves."""

import numpy as np
import pytest
from ase import Atoms

from scripts.benchmarks.physics_vs_mace import TASKS, curve_errors, split


def morse(r, depth=4.0, a=1.8, r0=1.1):
    return depth * (1.0 - np.exp(-a * (r - r0))) ** 2 - depth


def dimers(distances, kind="CO"):
    frames = []
    for r in np.random.default_rng(0).permutation(distances):  # unordered, as in the files
        atoms = Atoms(kind, positions=[[0, 0, 0], [r, 0, 0]])
        atoms.info.update({"energy": float(morse(r)), "distance": float(r),
                           "config_type": kind})
        frames.append(atoms)
    return frames


def predicted(frames, fn):
    return np.array([fn(a.info["distance"]) for a in frames])


def test_an_offset_is_no_shape_error_and_a_good_curve_has_no_defects():
    frames = dimers(np.linspace(0.6, 6.0, 40))
    row = curve_errors(frames, "distance", predicted(frames, lambda r: morse(r) + 0.05),
                       distance=True)["CO"]
    assert row["rmse"] == pytest.approx(50.0)
    assert row["rmse_offset_removed"] == pytest.approx(0.0, abs=1e-9)
    assert row["extra_minima"] == 0 and row["short_range_hole"] is False
    assert row["x"] == sorted(row["x"])


def test_a_spurious_minimum_and_a_hole_at_short_range_are_flagged():
    frames = dimers(np.linspace(0.6, 6.0, 40))

    def bad(r):  # collapses below 0.8 A and has a bump at 3 A
        return morse(r) - 30.0 * (r < 0.8) - 0.3 * np.exp(-((r - 3.0) / 0.2) ** 2)

    row = curve_errors(frames, "distance", predicted(frames, bad), distance=True)["CO"]
    assert row["short_range_hole"] is True
    assert row["extra_minima"] >= 1
    assert row["rmse_offset_removed"] > 1000.0


def test_the_3bpa_split_is_disjoint_and_sized():
    parts = split(TASKS["3bpa"], 500)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [450, 25, 25]
    assert not set(parts["train"]) & set(parts["val"]) and not set(parts["train"]) & set(
        parts["test"]) and not set(parts["val"]) & set(parts["test"])


def test_a_save_keeps_the_models_another_invocation_stored_meanwhile(tmp_path, monkeypatch):
    from scripts.benchmarks import common, physics_vs_mace

    monkeypatch.setattr(common, "_result_path", lambda name: tmp_path / f"{name}.json")
    mine = {"tasks": {}, "history": [{"command": "mine"}]}
    # another invocation saved its own model after this one loaded the results
    common.save_result(physics_vs_mace.RESULT, {"tasks": {"ethanol": {"other": {"x": 1}}},
                                                "history": [{"command": "other"}]})
    out = physics_vs_mace.merged(mine, "ethanol", "molsym", {"x": 2})
    assert out["tasks"]["ethanol"] == {"other": {"x": 1}, "molsym": {"x": 2}}
    assert out["history"] == [{"command": "other"}, {"command": "mine"}]
