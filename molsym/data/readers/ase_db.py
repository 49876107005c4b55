"""ASE database (``.db``) in: structures, key_value_pairs and calculator results.

``record`` is the 0-based row position in selection order (the row's own id stays in the
database; ``info["name"]`` is set from a ``name`` key when present).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import ase

from molsym.data.readers._common import (
    check_on_error,
    handle,
    is_number,
    require_file,
    tag,
    validate,
)
from molsym.data.readers.xyz import normalize_labels
from molsym.errors import InputError


def read_ase_db(
    path: str | os.PathLike,
    *,
    selection: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    energy_unit: str = "eV",
    forces_unit: str = "eV/Angstrom",
    label_units: Mapping[str, str] | None = None,
    on_error: str = "raise",
    errors: list | None = None,
) -> list[ase.Atoms]:
    """Rows of an ASE database; numeric key_value_pairs and calculator results become labels."""
    import ase.db

    check_on_error(on_error, errors)
    source = require_file(path)
    units = {"energy": energy_unit, "forces": forces_unit, **(label_units or {})}
    try:
        rows = list(ase.db.connect(str(path), type="db").select(selection))
    except Exception as err:  # sqlite3.DatabaseError and friends
        raise InputError(f"cannot read ASE database: {err}", source) from None
    out: list[ase.Atoms] = []
    for k, row in enumerate(rows):
        try:
            atoms = row.toatoms()
            kvp = dict(row.key_value_pairs)
            name = kvp.pop("name", None)
            atoms.info.update({key: v for key, v in kvp.items() if is_number(v)})
            if isinstance(name, str):
                atoms.info["name"] = name
            normalize_labels(atoms, energy_key, forces_key, units)
            validate(atoms, source, k, "row")
        except InputError as err:
            handle(err, on_error, errors)
            continue
        out.append(tag(atoms, source, k))
    return out
