"""Inputs of prediction: SMILES strings, structures and files to :class:`Entry` objects.

One :class:`Entry` per input molecule or frame, in input order; a record that cannot be read
or embedded is an entry with ``error`` set (naming the reason), never an exception, so one bad
record costs only its own row. SMILES are embedded by molsym's SMILES reader (RDKit ETKDG +
MMFF); ``embed`` options (``fragments``, ``max_heavy_atoms``, ``embed_timeout``) go to
:func:`molsym.data.readers.smiles.embed_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase
import numpy as np

from molsym import keys
from molsym.errors import InputError

#: File suffixes read as files (anything else that is not an existing file is a SMILES).
FILE_SUFFIXES = (".smi", ".csv", ".xyz", ".extxyz", ".sdf", ".mol", ".db", ".npz")


@dataclass
class Entry:
    """One input molecule/frame and, after prediction, its results.

    ``atoms`` is None when reading it failed (then ``error`` says why). ``values`` maps column
    names to numbers; ``forces`` is (N, 3) eV/Angstrom when forces were asked for;
    ``warnings`` are caveats that do not stop the prediction (fragments, extrapolation).
    """

    input: str
    index: int | None
    atoms: ase.Atoms | None = None
    smiles: str = ""
    id: str = ""
    error: str = ""
    values: dict[str, float] = field(default_factory=dict)
    forces: np.ndarray | None = None
    name: str = ""
    warnings: list[str] = field(default_factory=list)
    #: the geometry was embedded from a SMILES here (RDKit ETKDG + MMFF), not given
    embedded: bool = False

    @classmethod
    def from_atoms(cls, atoms: ase.Atoms, source: str = "api", index: int | None = None) -> Entry:
        """Wrap a structure; ``source``/``index`` default to ``atoms.info`` when it has them."""
        info = atoms.info
        src = str(info.get("source", source))
        idx = info.get("record", index)
        ident = str(info.get(keys.ID, f"{src}:{idx}"))
        warning = info.get("warning")
        return cls(src, idx, atoms, str(info.get("smiles", "") or ""), ident,
                   name=str(info.get("name", "") or ""),
                   warnings=[str(warning)] if warning else [])

    @classmethod
    def from_error(cls, err: Exception, source: str, index: int | None = None) -> Entry:
        """A failed record: ``err`` (an :class:`InputError` names its source and record, and
        its SMILES and name when it has them)."""
        src = str(getattr(err, "source", None) or source)
        rec = getattr(err, "record", None)
        idx = rec if rec is not None else index
        reason = getattr(err, "reason", None) or str(err)
        smiles = str(getattr(err, "smiles", "") or "")
        name = str(getattr(err, "name", "") or "")
        return cls(src, idx, None, smiles, f"{src}:{idx}" if idx is not None else src, reason,
                   name=name)


def merge_in_order(atoms_list: Sequence[ase.Atoms], errors: Sequence[Exception],
                   source: str) -> list[Entry]:
    """Entries of one input (read with ``on_error="skip"``) in record order, failures included."""
    entries = [Entry.from_atoms(a, source) for a in atoms_list]
    entries += [Entry.from_error(e, source) for e in errors]

    def order(e: Entry) -> tuple[int, float]:
        return (0, float(e.index)) if isinstance(e.index, (int, np.integer)) else (1, 0.0)

    return sorted(entries, key=order)  # stable: structures of one record keep their order


def embed_smiles(smiles: Sequence[str], source: str = "cli", n_jobs: int = 1,
                 **embed: Any) -> list[Entry]:
    """3D structures of SMILES strings (molsym's SMILES reader: RDKit ETKDG + MMFF) embedded
    in ``n_jobs`` processes. One :class:`Entry` per string, in order (index = 0-based
    position); a SMILES that cannot be parsed or embedded gets an entry with ``error`` set.
    """
    from molsym.data.readers import read_smiles

    smiles = [str(s) for s in smiles]
    errors: list = []
    atoms = read_smiles(smiles, num_workers=max(1, int(n_jobs)), on_error="skip",
                        errors=errors, source=source, **embed)
    entries = merge_in_order(atoms, errors, source)
    for entry in entries:
        entry.embedded = True
        if not entry.smiles and isinstance(entry.index, int) and entry.index < len(smiles):
            entry.smiles = smiles[entry.index]
    return entries


def molecules_to_entries(molecules: Sequence[str | ase.Atoms], source: str = "api",
                         n_jobs: int = 1, **embed: Any) -> list[Entry]:
    """Entries from a list of SMILES strings and/or structures (record = 0-based position)."""
    entries: list[Entry | None] = [None] * len(molecules)
    smiles_pos = [i for i, m in enumerate(molecules) if isinstance(m, str)]
    for i, mol in enumerate(molecules):
        if isinstance(mol, ase.Atoms):
            entries[i] = Entry.from_atoms(mol, source, i)
        elif not isinstance(mol, str):
            entries[i] = Entry(source, i, error=f"not a SMILES string or ase.Atoms: "
                                                f"{type(mol).__name__}")
    if smiles_pos:
        embedded = embed_smiles([molecules[i] for i in smiles_pos], source, n_jobs, **embed)
        for i, entry in zip(smiles_pos, embedded, strict=True):
            entry.index, entry.id = i, f"{source}:{i}"
            entries[i] = entry
    return [e for e in entries if e is not None]


def path_kind(arg: str) -> str:
    """``"file"``, ``"dir"`` or ``""`` (nothing there, or not a possible path, e.g. a SMILES
    longer than a file name may be)."""
    try:
        path = Path(arg)
        return "file" if path.is_file() else "dir" if path.is_dir() else ""
    except (OSError, ValueError):
        return ""


def is_file_arg(arg: str) -> bool:
    """Whether a command-line argument names a file (or folder) rather than a SMILES."""
    if path_kind(arg):
        return True
    try:
        return Path(arg).suffix.lower() in FILE_SUFFIXES
    except ValueError:
        return False


def gather(inputs: Sequence[str], n_jobs: int = 1, **embed: Any) -> list[Entry]:
    """Entries of every input, in order: files are read (bad records become error entries),
    other arguments are SMILES (input ``"cli"``, index = 0-based position among them)."""
    entries: list[Entry] = []
    smiles = [a for a in inputs if not is_file_arg(a)]
    embedded = iter(embed_smiles(smiles, "cli", n_jobs, **embed)) if smiles else iter(())
    for arg in inputs:
        kind = path_kind(arg)
        if not is_file_arg(arg):
            entries.append(next(embedded))
        elif kind == "dir":
            entries.append(Entry(arg, None, id=arg, error="is a directory, not a file"))
        elif not kind:
            entries.append(Entry(arg, None, id=arg, error="file not found"))
        else:
            entries.extend(read_input(arg, n_jobs, **embed))
    return entries


def read_input(path: str, n_jobs: int = 1, **embed: Any) -> list[Entry]:
    """Entries of one file, records in file order, failed records as error entries
    (SMILES files are embedded in ``n_jobs`` processes)."""
    from molsym.data.readers import read_file

    errors: list = []
    smiles_file = Path(path).suffix.lower() in (".smi", ".csv")
    options = {"num_workers": n_jobs, **embed} if smiles_file else {}
    try:
        atoms = read_file(path, on_error="skip", errors=errors, **options)
    except (InputError, OSError, ValueError) as err:  # the whole file is unreadable
        return [Entry.from_error(err, path)]
    entries = merge_in_order(atoms, errors, path)
    for entry in entries:
        entry.embedded = smiles_file
    return entries


def bare_atoms(atoms: ase.Atoms) -> ase.Atoms:
    """Structure only (numbers, positions, cell, pbc) plus ``info["total_charge"]`` (e, 0 when
    not given): labels of the input never reach the model, and every graph has the same fields
    so that a batch can mix inputs."""
    bare = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                     pbc=atoms.pbc)
    bare.info[keys.TOTAL_CHARGE] = float(atoms.info.get(keys.TOTAL_CHARGE, 0.0))
    return bare
