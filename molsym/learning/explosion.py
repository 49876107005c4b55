"""When an exploration trajectory has exploded: the committee's force spread far past the
threshold, a bond of its start structure broken, or two atoms on top of each other."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

#: Atoms closer than this (Angstrom) have collapsed onto each other.
MIN_DISTANCE = 0.5
#: Two atoms are bonded when closer than this times the sum of their covalent radii.
BOND_FACTOR = 1.2


def distances(atoms: Atoms) -> np.ndarray:
    """(N, N) interatomic distances in Angstrom (no periodic images: molecules)."""
    pos = np.asarray(atoms.positions)
    return np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)


def bonds(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs (M, 2), lengths (M,) Angstrom)`` of the bonds of ``atoms`` (covalent radii)."""
    d = distances(atoms)
    radii = covalent_radii[atoms.numbers]
    limit = BOND_FACTOR * (radii[:, None] + radii[None, :])
    i, j = np.nonzero(np.triu(d < limit, k=1))
    return np.stack([i, j], axis=1), d[i, j]


class ExplosionCheck:
    """Judges frames of one trajectory against the bonds of its start structure."""

    def __init__(self, start: Atoms, explode_at: float, bond_stretch: float):
        self.pairs, self.lengths = bonds(start)
        self.explode_at, self.bond_stretch = float(explode_at), float(bond_stretch)

    def reason(self, atoms: Atoms, spread: float) -> str | None:
        """Why the frame ``atoms`` (largest per-atom force spread ``spread`` eV/Angstrom)
        has exploded, or None when it is intact."""
        if not np.isfinite(spread) or spread > self.explode_at:
            return f"force spread {spread:.3g} eV/Angstrom past {self.explode_at:.3g}"
        d = distances(atoms)
        if len(self.pairs):
            stretch = d[self.pairs[:, 0], self.pairs[:, 1]] / self.lengths
            worst = int(np.argmax(stretch))
            if stretch[worst] > self.bond_stretch:
                i, j = self.pairs[worst]
                sym = atoms.get_chemical_symbols()
                return (f"bond {sym[i]}{i}-{sym[j]}{j} stretched to {stretch[worst]:.2f}x its "
                        "start length")
        np.fill_diagonal(d, np.inf)
        if len(atoms) > 1 and d.min() < MIN_DISTANCE:
            return f"two atoms {d.min():.2f} Angstrom apart"
        return None
