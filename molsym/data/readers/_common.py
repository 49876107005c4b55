"""Shared helpers of the readers: record tagging, error policy, structure checks, labels."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import ase
import numpy as np

from molsym.data.graph import MIN_DISTANCE, check_structure, neighbour_list
from molsym.errors import InputError
from molsym.units import to_internal

ON_ERROR = ("raise", "skip")
_SEARCH_CUTOFF = max(1.0, MIN_DISTANCE)
#: Up to this many atoms, the closest pair of a periodic structure is found among the minimum
#: image and the 26 images around it (no cell list); above, by the neighbour list.
PERIODIC_IMAGE_SEARCH_MAX_ATOMS = 256


def check_on_error(on_error: str, errors: list | None) -> None:
    """Validate the ``on_error`` policy argument shared by every reader."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if errors is not None and not isinstance(errors, list):
        raise TypeError("errors must be a list (bad records are appended to it) or None")


def require_file(path) -> str:
    """``str(path)``, after checking that it is an existing, non-empty file (InputError)."""
    source = str(path)
    if not os.path.isfile(path):
        raise InputError("no such file", source)
    if os.path.getsize(path) == 0:
        raise InputError("file is empty", source)
    return source


def handle(err: InputError, on_error: str, errors: list | None) -> None:
    """Raise ``err`` (``on_error="raise"``) or append it to ``errors`` (``"skip"``)."""
    if on_error == "raise":
        raise err
    if errors is not None:
        errors.append(err)


def collect(
    items: Iterable[tuple[Any, Callable[[], list[ase.Atoms] | ase.Atoms]]],
    on_error: str,
    errors: list | None,
) -> list[ase.Atoms]:
    """Run each record's builder; bad records raise or are skipped per ``on_error``."""
    out: list[ase.Atoms] = []
    for _, build in items:
        try:
            res = build()
        except InputError as err:
            handle(err, on_error, errors)
            continue
        out.extend(res if isinstance(res, list) else [res])
    return out


def tag(atoms: ase.Atoms, source: str, record: int, suffix: str = "") -> ase.Atoms:
    """Set ``info["id"|"source"|"record"]`` (``id = "<source>:<record><suffix>"``)."""
    atoms.info["source"] = source
    atoms.info["record"] = int(record)
    atoms.info["id"] = f"{source}:{record}{suffix}"
    return atoms


def min_pair_distance(positions: np.ndarray) -> tuple[float, int, int]:
    """Smallest distance (Angstrom) below 1 Angstrom between two atoms of a non-periodic
    structure and the pair (``inf, -1, -1`` when no two atoms are that close); the neighbour
    list of the graphs finds it (a dense distance matrix for small molecules)."""
    ei, _, dist = neighbour_list(positions, _SEARCH_CUTOFF)
    if not dist.size:
        return np.inf, -1, -1
    k = int(np.argmin(dist))
    return float(dist[k]), int(min(ei[:, k])), int(max(ei[:, k]))


def _min_periodic_distance(atoms: ase.Atoms, source, record, kind) -> tuple[float, int, int]:
    """Closest pair including periodic images: minimum image plus the 26 images around it
    (up to :data:`PERIODIC_IMAGE_SEARCH_MAX_ATOMS`), else the neighbour list."""
    pos, cell, pbc = atoms.positions, np.asarray(atoms.cell[:]), atoms.pbc
    if len(pos) > PERIODIC_IMAGE_SEARCH_MAX_ATOMS or abs(np.linalg.det(cell)) < 1e-9:
        try:
            ei, _, dist = neighbour_list(pos, _SEARCH_CUTOFF, cell, pbc)
        except Exception as err:  # degenerate cells and the like
            raise InputError(f"bad periodic cell: {err}", source, record, kind) from None
        k = int(np.argmin(dist)) if dist.size else -1
        return (float(dist[k]), int(ei[0, k]), int(ei[1, k])) if k >= 0 else (np.inf, -1, -1)
    frac = np.linalg.solve(cell.T, pos.T).T
    dfrac = frac[None, :, :] - frac[:, None, :]
    dfrac[..., pbc] -= np.round(dfrac[..., pbc])
    shifts = np.array(np.meshgrid(*[[-1, 0, 1] if p else [0] for p in pbc], indexing="ij"))
    shifts = shifts.reshape(3, -1).T
    vec = (dfrac[:, :, None, :] + shifts[None, None]) @ cell
    d2 = (vec * vec).sum(-1).min(-1)
    d2[np.diag_indices(len(pos))] = np.inf
    k = int(np.argmin(d2))
    i, j = divmod(k, len(pos))
    return float(np.sqrt(d2[i, j])), min(i, j), max(i, j)


def validate(atoms: ase.Atoms, source: str, record: int, kind: str = "record") -> None:
    """Raise :class:`InputError` for no atoms, NaN/inf coordinates, bad atomic numbers or two
    atoms closer than :data:`molsym.data.graph.MIN_DISTANCE` (periodic images included)."""
    check_structure(atoms, source, record, kind)
    if atoms.pbc.any():
        d, i, j = _min_periodic_distance(atoms, source, record, kind)
    else:
        d, i, j = min_pair_distance(atoms.arrays["positions"])
    if d < MIN_DISTANCE:
        raise InputError(
            f"atoms {i} and {j} are {d:.3g} Angstrom apart (< {MIN_DISTANCE})", source, record, kind
        )


def is_number(value: Any) -> bool:
    """True for real numeric scalars (numpy included), False for bools and strings."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def convert_labels(labels: Mapping[str, Any], units: Mapping[str, str] | None) -> dict:
    """Convert ``labels`` to internal units with ``units`` (label name -> unit name)."""
    out = dict(labels)
    for key, unit in (units or {}).items():
        if key in out and out[key] is not None:
            out[key] = to_internal(np.asarray(out[key], dtype=np.float64), unit)
            if np.ndim(out[key]) == 0:
                out[key] = float(out[key])
    return out


def numbered(lines: Iterable[str], start: int = 1) -> Iterator[tuple[int, str]]:
    """Enumerate lines 1-based (for error messages)."""
    return enumerate(lines, start)
