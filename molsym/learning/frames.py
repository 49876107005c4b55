"""Round files of structures (``start.extxyz``, ``selected.extxyz``), written atomically and
always labelled as read back, so that a resumed run labels exactly the same structures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ase.io
from ase import Atoms

from molsym.atomic import atomic_path

#: Info kept in round files (what the oracle and the report need).
KEPT_INFO = ("id", "smiles", "name", "total_charge", "multiplicity", "spread", "trajectory",
             "step", "before_explosion")


def write_frames(path: Path, frames: Sequence[Atoms]) -> list[Atoms]:
    """Write ``frames`` to ``path`` atomically; returns them as read back."""
    clean = []
    for atoms in frames:
        out = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        out.info.update({k: v for k, v in atoms.info.items() if k in KEPT_INFO})
        clean.append(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, clean, format="extxyz")
    return read_frames(path)


def read_frames(path: Path) -> list[Atoms]:
    """The frames of a round file ([] for an empty one)."""
    if path.stat().st_size == 0:
        return []
    return list(ase.io.read(path, index=":", format="extxyz"))
