"""SDF / MOL in, through RDKit, keeping the file's 3D coordinates and explicit hydrogens.

Numeric SD properties become labels in ``info`` (``energy_key`` is renamed to ``energy``;
units via ``energy_unit`` and ``label_units``). ``record`` is the 0-based molecule index.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import ase
import numpy as np

from molsym.data.readers._common import (
    check_on_error,
    convert_labels,
    handle,
    is_number,
    require_file,
    tag,
    validate,
)
from molsym.errors import InputError


def _mol_to_atoms(mol, energy_key: str, units: Mapping[str, str]) -> ase.Atoms:
    from rdkit import Chem

    if mol.GetNumConformers() == 0:
        raise ValueError("molecule has no coordinates")
    conf = mol.GetConformer()
    pos = np.array(conf.GetPositions(), dtype=np.float64)
    if not conf.Is3D() and mol.GetNumAtoms() > 1 and np.allclose(pos[:, 2], 0.0):
        raise ValueError("molecule has only 2D coordinates (embed it from SMILES instead)")
    z = np.fromiter((a.GetAtomicNum() for a in mol.GetAtoms()), dtype=np.int64)
    atoms = ase.Atoms(numbers=z, positions=pos)
    props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
    labels = {k: float(v) for k, v in props.items() if is_number(v)}
    if energy_key in labels:
        labels["energy"] = labels.pop(energy_key)
    atoms.info.update(convert_labels(labels, units))
    atoms.info["total_charge"] = float(Chem.GetFormalCharge(mol))
    try:
        atoms.info["smiles"] = Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # RemoveHs can fail on odd valences; the SMILES is optional
        atoms.info["smiles"] = Chem.MolToSmiles(mol)
    name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    if name:
        atoms.info["name"] = name
    return atoms


_EMPTY = object()
SD_DELIMITER = "$$$$"


def sd_records(path: str | os.PathLike) -> Iterator[str]:
    """The text of each record of an SD file, split at its ``$$$$`` lines, read as a stream
    (one record in memory at a time).

    Each record is parsed on its own, so a record RDKit cannot close (a lost ``M  END``, a
    cut block) never swallows its neighbours; trailing blank text is not a record."""
    current: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip() == SD_DELIMITER:
                yield "".join(current)
                current = []
            else:
                current.append(line)
    if "".join(current).strip():
        yield "".join(current)


def _parse_record(block: str, sanitize: bool):
    """One SD record (molblock and its ``> <prop>`` fields) as an RDKit Mol, None if RDKit
    refuses it, ``_EMPTY`` for a blank record."""
    from rdkit import Chem

    if not block.strip():
        return _EMPTY
    supplier = Chem.SDMolSupplier()
    supplier.SetData(block + SD_DELIMITER + "\n", removeHs=False, sanitize=sanitize)
    try:
        return next(iter(supplier), None)
    except RuntimeError:  # RDKit raises on some broken blocks instead of returning None
        return None


def read_sdf(
    path: str | os.PathLike,
    *,
    energy_key: str = "energy",
    energy_unit: str = "eV",
    label_units: Mapping[str, str] | None = None,
    sanitize: bool = True,
    on_error: str = "raise",
    errors: list | None = None,
) -> list[ase.Atoms]:
    """All molecules of an SDF (or a single .mol) file as ``ase.Atoms`` with 3D coordinates."""
    from rdkit import Chem, RDLogger

    check_on_error(on_error, errors)
    source = require_file(path)
    with open(path, "rb") as fh:
        if not fh.read().strip():
            raise InputError("file is empty", source)
    units = {"energy": energy_unit, **(label_units or {})}
    RDLogger.DisableLog("rdApp.*")
    if str(path).lower().endswith(".mol"):
        mols = [Chem.MolFromMolFile(str(path), removeHs=False, sanitize=sanitize)]
    else:
        mols = (_parse_record(block, sanitize) for block in sd_records(path))
    out: list[ase.Atoms] = []
    for k, mol in enumerate(mols):
        try:
            if mol is None:
                raise ValueError("RDKit could not parse this molecule")
            if mol is _EMPTY:
                raise ValueError("empty record (two $$$$ lines with nothing between)")
            atoms = _mol_to_atoms(mol, energy_key, units)
            validate(atoms, source, k, "molecule")
        except ValueError as err:
            exc = err if isinstance(err, InputError) else (
                InputError(str(err), source, k, "molecule")
            )
            handle(exc, on_error, errors)
            continue
        out.append(tag(atoms, source, k))
    return out
