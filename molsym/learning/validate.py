"""Validation on fresh labels: the errors of a committee on frames it has never seen (the
labels of the next round, picked from its own MD), with its spread on the same frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from molsym.units import MEV


def fresh_errors(model: Path, frames: Sequence[Atoms]) -> dict:
    """``forces_mae`` (eV/Angstrom, per component), ``energy_mae`` (meV/atom),
    ``forces_max_error`` (eV/Angstrom, largest per-atom error norm) and ``spread_mean`` (the
    mean largest per-atom force spread) of the committee ``model`` on labelled ``frames``."""
    if not frames:
        return {"count": 0}
    from molsym.inference.calculator import MolsymCalculator

    calc = MolsymCalculator(str(model), dtype="float64")
    force_err, energy_err, max_err, spreads = [], [], [], []
    for frame in frames:
        atoms = Atoms(numbers=frame.numbers, positions=frame.positions)
        atoms.calc = calc
        forces = atoms.get_forces()
        energy = atoms.get_potential_energy()
        ref_f = np.asarray(frame.arrays["forces"])
        force_err.append(np.abs(forces - ref_f).ravel())
        max_err.append(float(np.linalg.norm(forces - ref_f, axis=1).max()))
        energy_err.append(abs(energy - float(frame.info["energy"])) / len(atoms))
        spreads.append(float(np.max(calc.results["forces_std"])))
    return {"count": len(frames), "forces_mae": float(np.concatenate(force_err).mean()),
            "energy_mae": float(np.mean(energy_err)) / MEV,
            "forces_max_error": float(np.mean(max_err)), "spread_mean": float(np.mean(spreads))}
