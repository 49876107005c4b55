"""Cheap labelled molecules for scale tests and benchmarks: random but valid, EMT-labelled.

Each molecule grows atom by atom: a new atom sits 1.0-1.6 Angstrom from a random earlier
one and at least 0.95 Angstrom from all others, so no pair is closer than molsym's graph
minimum. Energies and forces come from ASE's EMT (eV, eV/Angstrom): not chemistry, but
finite, smooth and consistent (forces are the energy's gradient), which is what a data
pipeline test needs. EMT costs a few milliseconds per molecule, so :func:`rotated_frames`
labels a pool of molecules once and makes each frame a random rigid rotation of one of them
(the energy is invariant, the forces rotate with the atoms): about 50 microseconds a frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import ase
import numpy as np
from ase.calculators.emt import EMT

ELEMENTS = (1, 6, 7, 8)


def random_molecule(rng: np.random.Generator, num_atoms: int) -> ase.Atoms:
    """A random connected cluster of ``num_atoms`` H/C/N/O atoms (no labels)."""
    pos = [np.zeros(3)]
    while len(pos) < num_atoms:
        anchor = pos[int(rng.integers(len(pos)))]
        step = rng.normal(size=3)
        trial = anchor + step / np.linalg.norm(step) * rng.uniform(1.0, 1.6)
        if np.min(np.linalg.norm(np.asarray(pos) - trial, axis=1)) >= 0.95:
            pos.append(trial)
    return ase.Atoms(numbers=rng.choice(ELEMENTS, num_atoms), positions=np.asarray(pos))


def emt_frames(count: int, seed: int = 0, min_atoms: int = 4,
               max_atoms: int = 12) -> Iterator[ase.Atoms]:
    """``count`` EMT-labelled random molecules (``info["energy"]``, ``arrays["forces"]``)."""
    rng = np.random.default_rng(seed)
    calc = EMT()
    for k in range(count):
        atoms = random_molecule(rng, int(rng.integers(min_atoms, max_atoms + 1)))
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces().copy()
        atoms.calc = None
        atoms.info["energy"] = energy
        atoms.arrays["forces"] = forces
        atoms.info["id"] = f"emt:{k}"
        yield atoms


def rotated_frames(count: int, pool_size: int = 1000, seed: int = 0,
                   min_atoms: int = 4, max_atoms: int = 12) -> Iterator[ase.Atoms]:
    """``count`` frames, each a random rotation of one of ``pool_size`` EMT-labelled
    molecules (exact labels: E invariant, forces rotated)."""
    pool = list(emt_frames(min(pool_size, count), seed, min_atoms, max_atoms))
    rng = np.random.default_rng(seed + 1)
    for k in range(count):
        base = pool[int(rng.integers(len(pool)))]
        rot = random_rotation(rng)
        atoms = ase.Atoms(numbers=base.numbers, positions=base.positions @ rot.T)
        atoms.info["energy"] = base.info["energy"]
        atoms.arrays["forces"] = base.arrays["forces"] @ rot.T
        atoms.info["id"] = f"emt:{k}"
        yield atoms


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation (3, 3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q
