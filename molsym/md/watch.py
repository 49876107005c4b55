"""Stop conditions of an MD run: non-finite energies or forces, a bond stretched past a factor
of its starting length (the structure falls apart), a committee spread past a limit."""

from __future__ import annotations

import ase
import numpy as np
from ase.data import chemical_symbols, covalent_radii

#: A pair is bonded at the start when closer than this factor times the sum of its covalent
#: radii (ASE's table).
BOND_TOLERANCE = 1.3


class BondWatch:
    """The bonds of the starting structure, and which of them has broken since.

    Args:
        atoms: the starting structure.
        max_stretch: a bond is broken when longer than this factor times its starting length
            (0 or less: never).
    """

    def __init__(self, atoms: ase.Atoms, max_stretch: float = 2.0):
        self.max_stretch = float(max_stretch)
        self.pbc = bool(atoms.pbc.any())
        n = len(atoms)
        if n < 2 or self.max_stretch <= 0:
            self.pairs = np.zeros((0, 2), dtype=int)
            self.length0 = np.zeros(0)
            return
        d = atoms.get_all_distances(mic=self.pbc)
        radii = covalent_radii[atoms.numbers]
        bonded = d < BOND_TOLERANCE * (radii[:, None] + radii[None, :])
        i, j = np.nonzero(np.triu(bonded, k=1))
        self.pairs = np.stack([i, j], axis=1)
        self.length0 = d[i, j]

    def problem(self, atoms: ase.Atoms) -> str:
        """'' while every starting bond holds, else which one broke and by how much."""
        if not len(self.pairs):
            return ""
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        if self.pbc:
            vec = atoms.positions[j] - atoms.positions[i]
            from ase.geometry import find_mic

            _, length = find_mic(vec, atoms.cell, atoms.pbc)
        else:
            length = np.linalg.norm(atoms.positions[j] - atoms.positions[i], axis=1)
        ratio = length / self.length0
        worst = int(np.argmax(ratio))
        if not ratio[worst] > self.max_stretch and np.isfinite(ratio).all():
            return ""
        a, b = int(i[worst]), int(j[worst])
        name = (f"{chemical_symbols[atoms.numbers[a]]}{a}-"
                f"{chemical_symbols[atoms.numbers[b]]}{b}")
        return (f"bond {name} stretched to {length[worst]:.2f} Angstrom, "
                f"{ratio[worst]:.1f} times its starting {self.length0[worst]:.2f} Angstrom "
                f"(limit {self.max_stretch:g}x): the structure falls apart")


def nonfinite_problem(energy: float, forces: np.ndarray) -> str:
    """'' when the energy and every force component are finite."""
    if not np.isfinite(energy):
        return f"the energy is not finite ({energy})"
    bad = ~np.isfinite(forces).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        return f"forces on {int(bad.sum())} atom(s) are not finite (first: atom {first})"
    return ""
