"""rMD17 / sGDML ``.npz`` in: one molecule, many frames, kcal/mol labels by default.

rMD17 keys: ``nuclear_charges`` (N,), ``coords`` (F, N, 3) Angstrom, ``energies`` (F,)
kcal/mol, ``forces`` (F, N, 3) kcal/mol/Angstrom. sGDML keys ``z``, ``R``, ``E``, ``F`` are
read the same way. ``record`` is the 0-based frame index.
"""

from __future__ import annotations

import os
import zipfile

import ase
import numpy as np

from molsym.data.readers._common import check_on_error, handle, tag, validate
from molsym.errors import InputError
from molsym.units import to_internal

_LAYOUTS = (
    ("nuclear_charges", "coords", "energies", "forces"),
    ("z", "R", "E", "F"),
)


def read_npz(
    path: str | os.PathLike,
    *,
    energy_unit: str = "kcal/mol",
    forces_unit: str = "kcal/mol/Angstrom",
    indices: list[int] | None = None,
    on_error: str = "raise",
    errors: list | None = None,
) -> list[ase.Atoms]:
    """Frames of an rMD17/sGDML npz, energies (eV) and forces (eV/Angstrom) converted."""
    check_on_error(on_error, errors)
    source = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"cannot read npz: {err}", source) from None
    layout = next((lay for lay in _LAYOUTS if lay[0] in data and lay[1] in data), None)
    if layout is None:
        raise InputError(f"no rMD17/sGDML keys in npz (keys: {sorted(data.files)})", source)
    zk, rk, ek, fk = layout
    z = np.asarray(data[zk], dtype=np.int64).reshape(-1)
    coords = np.asarray(data[rk], dtype=np.float64)
    if coords.ndim != 3 or coords.shape[1:] != (len(z), 3):
        raise InputError(f"{rk!r} has shape {coords.shape}, expected (frames, {len(z)}, 3)", source)
    energies = to_internal(np.asarray(data[ek], np.float64).reshape(-1), energy_unit) if (
        ek in data) else None
    forces = to_internal(np.asarray(data[fk], np.float64), forces_unit) if fk in data else None
    if energies is not None and len(energies) != len(coords):
        raise InputError(f"{len(energies)} energies for {len(coords)} frames", source)
    if forces is not None and forces.shape != coords.shape:
        raise InputError(f"forces shape {forces.shape} != coords shape {coords.shape}", source)
    out: list[ase.Atoms] = []
    for k in range(len(coords)) if indices is None else indices:
        if not 0 <= k < len(coords):
            raise InputError(f"index {k} out of range ({len(coords)} frames)", source)
        atoms = ase.Atoms(numbers=z, positions=coords[k])
        if energies is not None:
            atoms.info["energy"] = float(energies[k])
        if forces is not None:
            atoms.arrays["forces"] = forces[k].copy()
        try:
            validate(atoms, source, k, "frame")
        except InputError as err:
            handle(err, on_error, errors)
            continue
        out.append(tag(atoms, source, k))
    return out
