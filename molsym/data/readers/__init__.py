"""Readers: every input format to a list of ``ase.Atoms`` (see docs/architecture.md).

Each structure carries ``info["id"] = "<source>:<record>"``, ``info["source"]``,
``info["record"]`` (1-based line for .smi/.csv, 0-based frame/molecule index otherwise),
``info["smiles"]``/``info["name"]`` when known, and labels in internal units (eV, Angstrom,
eV/Angstrom, e*Angstrom) under molsym's key names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import ase

from molsym.data.readers import qm9
from molsym.data.readers._common import check_on_error
from molsym.data.readers.ase_db import read_ase_db
from molsym.data.readers.npz import read_npz
from molsym.data.readers.qm9 import PROPERTIES as QM9_PROPERTIES
from molsym.data.readers.qm9 import read_qm9
from molsym.data.readers.sdf import read_sdf
from molsym.data.readers.smiles import read_smi, read_smiles, read_smiles_csv
from molsym.data.readers.xyz import read_xyz
from molsym.errors import InputError

READERS: dict[str, Callable[..., list[ase.Atoms]]] = {
    "smi": read_smi,
    "csv": read_smiles_csv,
    "xyz": read_xyz,
    "extxyz": read_xyz,
    "sdf": read_sdf,
    "mol": read_sdf,
    "db": read_ase_db,
    "npz": read_npz,
    "qm9": read_qm9,
}

#: Readers that also take names in place of a path (QM9: "qm9pack", "download"): the module
#: of each holds ``NAMED_SOURCES``, ``resolve_named_source`` and ``named_source_files``.
NAMED_SOURCES = {"qm9": qm9}


def is_named_source(path: str | os.PathLike | None, format: str | None) -> bool:
    """True when ``path`` is a name the reader of ``format`` resolves itself (no file; None:
    the reader's default source)."""
    hook = NAMED_SOURCES.get(format or "")
    return hook is not None and (path is None or str(path) in hook.NAMED_SOURCES)


def resolve_named_source(path: str | os.PathLike, format: str | None,
                         cache_dir: str | os.PathLike | None = None) -> str | os.PathLike:
    """The path to read: a named source resolved by its reader (QM9's "download" fetched once
    into ``cache_dir``), any other path as it is."""
    if not is_named_source(path, format):
        return path
    return NAMED_SOURCES[str(format)].resolve_named_source(str(path), cache_dir)


def named_source_files(path: str | os.PathLike, format: str | None) -> list[Path]:
    """The files behind a named source (for cache keys)."""
    return NAMED_SOURCES[str(format)].named_source_files(str(path))


def detect_format(path: str | os.PathLike) -> str:
    """Format name from the file extension (``.smi .csv .xyz .extxyz .sdf .mol .db .npz``)."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in READERS or ext == "qm9":
        raise InputError(
            f"unknown file extension {Path(path).suffix!r}; known: "
            f"{sorted(k for k in READERS if k != 'qm9')} (or pass format=...)",
            str(path),
        )
    return ext


def read_file(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    on_error: str = "raise",
    errors: list | None = None,
    **options,
) -> list[ase.Atoms]:
    """Read every structure of ``path`` (format from the extension unless given; ``"qm9"``
    for QM9). ``options`` go to the format's reader. With ``on_error="skip"`` bad records are
    appended to ``errors`` as :class:`InputError` and the good ones are returned."""
    check_on_error(on_error, errors)
    fmt = format.lower() if format else detect_format(path)
    if fmt not in READERS:
        raise InputError(f"unknown format {format!r}; known: {sorted(READERS)}", str(path))
    if not is_named_source(path, fmt):
        if not os.path.exists(path):
            raise InputError("no such file", str(path))
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise InputError("file is empty", str(path))
    try:
        return READERS[fmt](path, on_error=on_error, errors=errors, **options)
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise InputError(f"cannot read file: {err}", str(path)) from None


__all__ = [
    "QM9_PROPERTIES",
    "NAMED_SOURCES",
    "READERS",
    "detect_format",
    "is_named_source",
    "named_source_files",
    "read_ase_db",
    "read_file",
    "read_npz",
    "read_qm9",
    "read_sdf",
    "read_smi",
    "read_smiles",
    "read_smiles_csv",
    "read_xyz",
    "resolve_named_source",
]
