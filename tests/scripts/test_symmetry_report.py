"""The symmetry study's bookkeeping (scripts/benchmarks/symmetry.py, summary.py): the
deviations it reports from stacked predictions, and the summary rows it feeds."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.benchmarks import summary, symmetry


def _stacked(rng, rots, frames=2, atoms=4):
    """Energies and forces of ``frames`` frames, then of the same frames under each of
    ``rots``, for an exactly equivariant model."""
    e0 = rng.normal(size=frames)
    f0 = rng.normal(size=(frames, atoms, 3))
    energy = np.concatenate([e0] * (len(rots) + 1))
    forces = np.concatenate([f0] + [f0 @ r.T for r in rots]).reshape(-1, 3)
    return energy, forces


def test_deviations_are_zero_for_equivariant_outputs_and_find_the_largest_error():
    rng = np.random.default_rng(0)
    rots = [np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(3)]
    energy, forces = _stacked(rng, rots)
    exact = symmetry.deviations(energy, forces, rots)
    assert exact["energy_meV"] == 0.0
    assert exact["forces_meV_per_A"] < 1e-9
    energy[-1] += 0.002  # the last frame under the last rotation: 2 meV
    forces[-5, 1] -= 0.01  # an atom of the last frame under the last rotation: 10 meV/A
    off = symmetry.deviations(energy, forces, rots)
    assert off["energy_meV"] == pytest.approx(2.0)
    assert off["forces_meV_per_A"] == pytest.approx(10.0)
    # a force that is not rotated with the frame is caught
    wrong = symmetry.deviations(*_stacked(rng, [np.eye(3)] * 3), rots)
    assert wrong["forces_meV_per_A"] > 1.0


def test_summary_rows_list_the_peers_and_the_control_at_the_same_dtype(monkeypatch):
    def row(model, dtype, forces):
        return {"model": model, "dtype": dtype, "weights": "", "energy_meV": 0.0,
                "forces_meV_per_A": forces}

    rows = [row("molsym equivariant", "float32", 0.04), row("molsym equivariant", "float64", 1e-10),
            row("MACE", "float32", 0.02), row("MACE", "float64", 7e-5),
            row("NequIP", "float64+cg", 3e-11), row(symmetry.CONTROL, "float32", 2400.0),
            row(symmetry.CONTROL, "float64", 2400.0)]
    monkeypatch.setattr(summary.common, "load_result", lambda name: {"rows": rows})
    out = summary.symmetry_rows()
    assert [r[1] for r in out] == ["0.04", "1e-10"]
    assert out[0][2] == "MACE 0.02, augmented MLP 2.4e+03"
    assert out[1][2] == "MACE 7e-05, augmented MLP 2.4e+03"
