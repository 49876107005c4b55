"""Labelling a round's selection with the oracle, into the run's ``labels.extxyz``.

:func:`molsym.oracles.label` does the work (worker processes, per-structure timeout, a frame
appended and fsync-ed as soon as it is complete, failures recorded in ``failures.jsonl``), so
a killed run that labels the same selection again repeats no finished label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ase import Atoms

from molsym.oracles import LabelReport, Oracle, label, structure_key
from molsym.oracles.spin import charge_and_multiplicity
from molsym.oracles.store import LABELS


def count_labels(run_dir: Path) -> int:
    """Frames in ``run_dir/labels.extxyz`` (0 when there is none)."""
    path = run_dir / LABELS
    if not path.is_file():
        return 0
    return sum(1 for line in path.open("rb") if b"label_key=" in line)


def read_labels(run_dir: Path) -> list[Atoms]:
    """The labelled frames (energy in ``info["energy"]``, forces in ``arrays["forces"]``)."""
    from molsym.data.readers import read_file

    path = run_dir / LABELS
    return read_file(str(path)) if path.is_file() else []


def label_round(structures: Sequence[Atoms], oracle: Oracle, run_dir: Path, workers: int,
                timeout_s: float | None) -> LabelReport:
    """Label ``structures`` into ``run_dir`` (see the module doc)."""
    return label(list(structures), oracle, run_dir, workers=workers, timeout_s=timeout_s)


def labels_of(structures: Sequence[Atoms], labelled: Sequence[Atoms]) -> list[Atoms]:
    """The labelled frames of ``structures`` (matched by :func:`structure_key`), in order;
    structures whose labelling failed are left out."""
    by_key = {str(a.info.get("label_key")): a for a in labelled}
    out = []
    for atoms in structures:
        charge, mult = charge_and_multiplicity(atoms)
        frame = by_key.get(structure_key(atoms, charge, mult))
        if frame is not None:
            out.append(frame)
    return out
