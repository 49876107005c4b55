"""Periodic boxes of many molecules, for scaling benchmarks and tests of large systems.

``water_box`` fills a cubic cell at the density of liquid water (0.0334 molecules per
Angstrom^3, 1.0 g/cm^3) with randomly oriented rigid waters on a simple cubic lattice;
``molecular_box`` packs copies of any molecule (an organic one, e.g. aspirin) like a crystal:
all in the same orientation (principal axes along x, y, z) on an orthorhombic lattice whose
spacing along each axis is the molecule's extent plus ``gap``. Neither is equilibrated:
they have realistic neighbour counts, which is what the cost depends on.
"""

from __future__ import annotations

import ase
import numpy as np

#: Molecules per Angstrom^3 of liquid water at 1.0 g/cm^3.
WATER_NUMBER_DENSITY = 0.03343
#: Rigid water geometry (O, H, H), Angstrom: O-H 0.9572, H-O-H 104.52 degrees.
WATER = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])


def _rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` random proper rotations (count, 3, 3), uniform (QR of Gaussian matrices)."""
    q, r = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def _lattice_box(numbers: np.ndarray, positions: np.ndarray, per_side: int, spacing: float,
                 seed: int) -> ase.Atoms:
    rng = np.random.default_rng(seed)
    centred = positions - positions.mean(axis=0)
    grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rotated = np.einsum("mij,aj->mai", _rotations(rng, len(grid)), centred)
    pos = rotated + (grid[:, None, :] + 0.5) * spacing
    return ase.Atoms(numbers=np.tile(numbers, len(grid)), positions=pos.reshape(-1, 3),
                     cell=np.eye(3) * per_side * spacing, pbc=True)


def water_box(per_side: int, seed: int = 0) -> ase.Atoms:
    """``per_side**3`` waters (3 x that many atoms) in a periodic cube at 1.0 g/cm^3."""
    spacing = WATER_NUMBER_DENSITY ** (-1.0 / 3.0)
    return _lattice_box(np.array([8, 1, 1]), WATER, per_side, spacing, seed)


def molecular_box(molecule: ase.Atoms, per_side: int, gap: float = 1.5) -> ase.Atoms:
    """``per_side**3`` copies of ``molecule`` in a periodic orthorhombic cell, aligned on
    their principal axes, spaced by the extent along each axis + ``gap`` (Angstrom), so no
    two copies come closer than ``gap``."""
    pos = np.asarray(molecule.positions, dtype=np.float64)
    centred = pos - pos.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    aligned = centred @ axes.T
    spacing = np.ptp(aligned, axis=0) + gap
    grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    out = aligned[None] - aligned.min(axis=0) + gap / 2 + grid[:, None, :] * spacing
    return ase.Atoms(numbers=np.tile(molecule.numbers, len(grid)), positions=out.reshape(-1, 3),
                     cell=np.diag(spacing * per_side), pbc=True)
