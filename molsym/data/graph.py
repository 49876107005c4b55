"""Molecules to graphs: the one function used for training and for inference.

``atoms_to_graph`` turns an ``ase.Atoms`` (labels in ``atoms.info`` / ``atoms.arrays`` under the
names of :mod:`molsym.keys`, internal units) into a ``torch_geometric.data.Data``. Every pair
of atoms within the cutoff is an edge (both directions); nothing is capped.
"""

from __future__ import annotations

import numbers

import ase
import numpy as np
import torch
import vesin
from torch_geometric.data import Data

from molsym import keys
from molsym.errors import InputError
from molsym.nn.pairs import one_direction

#: Two atoms closer than this (Angstrom) are rejected as a broken structure.
MIN_DISTANCE = 0.1

_RESERVED_INFO = {keys.ID, "name", "smiles", "source", "record", "pbc", "spacegroup", "unit_cell"}


#: Below this many atoms, non-periodic neighbour search is a dense numpy distance matrix
#: (faster than a cell list for small molecules; identical result).
DENSE_SEARCH_MAX_ATOMS = 96


def neighbour_list(
    positions: np.ndarray,
    cutoff: float,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j), i != j (or periodic images), closer than ``cutoff``.

    Returns ``edge_index`` (2, E) int64, ``cell_shifts`` (E, 3) int64 and distances (E,) so
    that ``pos[j] - pos[i] + cell_shifts @ cell`` is the edge vector. Edges are sorted by
    centre atom, then neighbour.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.zeros(3, dtype=bool) if pbc is None else np.asarray(pbc, dtype=bool)
    if cell is None or not pbc.any():
        if len(positions) <= DENSE_SEARCH_MAX_ATOMS:
            return _dense_neighbour_list(positions, cutoff)
        cell = np.zeros((3, 3))
        pbc = np.zeros(3, dtype=bool)
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    calc = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, dist = calc.compute(
        points=positions, box=cell, periodic=pbc.tolist(), quantities="ijSd", copy=True
    )
    order = np.lexsort((j, i))  # deterministic order: by centre, then neighbour
    edge_index = np.stack([i[order], j[order]]).astype(np.int64)
    return edge_index, shifts[order].astype(np.int64), dist[order]


def _dense_neighbour_list(
    positions: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    diff = positions[None, :, :] - positions[:, None, :]  # (N, N, 3): pos[j] - pos[i]
    dist2 = np.einsum("ijk,ijk->ij", diff, diff)
    np.fill_diagonal(dist2, np.inf)
    i, j = np.nonzero(dist2 < cutoff * cutoff)  # row-major: sorted by i, then j
    edge_index = np.stack([i, j]).astype(np.int64)
    return edge_index, np.zeros((len(i), 3), dtype=np.int64), np.sqrt(dist2[i, j])


def check_structure(atoms: ase.Atoms, source: str | None = None, record=None,
                    kind: str = "record") -> None:
    """Raise :class:`InputError` for structures no model should see (no atoms, NaN/inf
    coordinates, atomic numbers outside 1-118). The one structure check of molsym: the readers
    (:func:`molsym.data.readers._common.validate`, which adds the closest-pair check) and
    :func:`atoms_to_graph` both run it."""
    check_arrays(atoms.arrays["positions"], atoms.arrays["numbers"], source, record, kind)


def check_arrays(pos: np.ndarray, z: np.ndarray, source=None, record=None,
                 kind: str = "record") -> None:
    """:func:`check_structure` on the position (N, 3) and atomic-number (N,) arrays."""
    if len(z) == 0:
        raise InputError("structure has no atoms", source, record, kind)
    if not np.isfinite(pos).all():
        bad = int(np.argwhere(~np.isfinite(pos))[0, 0])
        raise InputError(f"non-finite coordinate on atom {bad}", source, record, kind)
    if z.min() <= 0 or z.max() > 118:
        bad_z = sorted({int(x) for x in z[(z <= 0) | (z > 118)]})
        raise InputError(f"invalid atomic number(s) {bad_z}", source, record, kind)


#: Largest cell entry, spread and coordinate of the atoms of a periodic structure (Angstrom).
MAX_PERIODIC_LENGTH = 1e5

#: vesin's cell list caps its number of bins near 1e5 by shrinking every direction alike; a
#: direction shrunk to no bin kills the process (SIGFPE). Cells that would are refused.
_MAX_BINS = 5e4


def _cell_too_elongated(cell: np.ndarray, cutoff: float, pbc: np.ndarray,
                        positions: np.ndarray) -> bool:
    """True for a cell whose cell list, capped at :data:`_MAX_BINS` bins, would give some
    direction less than one bin (a non-periodic direction spans at least the atoms' extent)."""
    with np.errstate(all="ignore"):  # entries near the float limits overflow: refused
        volume = abs(np.linalg.det(cell))
        if volume < 1e-9:  # a zero vector (non-periodic direction): the vectors' lengths
            heights = np.linalg.norm(cell, axis=1)
        else:
            cross = [np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                     for k in range(3)]
            heights = volume / np.array(cross)
        extent = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
        heights = np.where(pbc, heights, np.maximum(heights, extent))
        bins = np.maximum(1.0, np.floor(heights / cutoff))
        total = float(np.prod(bins))
    if not (np.isfinite(volume) and np.isfinite(bins).all() and np.isfinite(total)):
        return True
    reach = float(np.abs(positions).max()) if len(positions) else 0.0
    if max(float(np.abs(cell).max()), extent, reach) > MAX_PERIODIC_LENGTH:
        return True  # vesin also fails on some such cells the bin estimate above passes
    return total > _MAX_BINS and float(bins.min()) * (_MAX_BINS / total) ** (1 / 3) < 1.0


def atoms_to_graph(
    atoms: ase.Atoms,
    cutoff: float,
    dtype: torch.dtype | None = None,
    source: str | None = None,
    record=None,
) -> Data:
    """Build the graph of one structure.

    Args:
        atoms: structure; labels in ``atoms.info`` (energy, dipole, any numeric scalar) and
            ``atoms.arrays`` (forces), internal units, molsym key names.
        cutoff: neighbour cutoff radius in Angstrom.
        dtype: floating dtype of positions and labels.
        source, record: where the structure came from, for error messages.
    """
    dtype = dtype or torch.get_default_dtype()
    source = source if source is not None else atoms.info.get("source")
    record = record if record is not None else atoms.info.get("record")
    pos = np.array(atoms.positions, dtype=np.float64)  # copies: the graph owns its arrays
    z = np.array(atoms.numbers, dtype=np.int64)
    check_arrays(pos, z, source, record)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        if not np.isfinite(cell).all():
            raise InputError("periodic structure with a non-finite cell", source, record)
        if abs(np.linalg.det(cell[pbc][:, pbc])) < 1e-9:
            raise InputError("periodic structure with a degenerate cell", source, record)
        if _cell_too_elongated(cell, cutoff, pbc, pos):
            lengths = np.round(np.linalg.norm(cell, axis=1), 3).tolist()
            raise InputError(
                f"periodic structure too elongated for the neighbour search (cell lengths "
                f"{lengths} Angstrom, atoms out to {float(np.abs(pos).max()):.4g} Angstrom, "
                f"cutoff {cutoff:g})", source, record)
    else:
        cell = np.zeros((3, 3))
    edge_index, shifts, dist = neighbour_list(pos, cutoff, cell, pbc)
    if dist.size and dist.min() < MIN_DISTANCE:
        k = int(np.argmin(dist))
        raise InputError(
            f"atoms {edge_index[0, k]} and {edge_index[1, k]} are {dist[k]:.3g} Angstrom apart "
            f"(< {MIN_DISTANCE})",
            source,
            record,
        )
    n = len(z)
    data = Data(
        z=torch.from_numpy(z),
        pos=torch.from_numpy(pos).to(dtype),
        edge_index=torch.from_numpy(edge_index),
        cell_shifts=torch.from_numpy(shifts).to(dtype),
        cell=torch.from_numpy(cell).to(dtype).unsqueeze(0),
        pbc=torch.from_numpy(pbc.copy()).unsqueeze(0),
        num_atoms=torch.tensor([n], dtype=torch.long),
        num_nodes=n,
    )
    # one edge per pair, found once here (the data pipeline) instead of at every model call
    half = None if pbc.any() else one_direction(data[keys.EDGE_INDEX])
    data[keys.PAIR_INDEX] = half if half is not None else torch.zeros(2, 0, dtype=torch.long)
    _attach_labels(data, atoms, dtype)
    if keys.ID in atoms.info:
        data[keys.ID] = str(atoms.info[keys.ID])
    return data


def edge_lengths(data: Data) -> np.ndarray:
    """Lengths (E,) in Angstrom, float64, of the edges of a graph of :func:`atoms_to_graph`
    (periodic images included)."""
    index = data[keys.EDGE_INDEX]
    pos = data[keys.POSITIONS].double()
    vec = pos.index_select(0, index[1]) - pos.index_select(0, index[0])
    if keys.CELL_SHIFTS in data and keys.CELL in data and index.shape[1]:
        vec = vec + data[keys.CELL_SHIFTS].double() @ data[keys.CELL].double().reshape(3, 3)
    return torch.linalg.vector_norm(vec, dim=-1).numpy()


def _attach_labels(data: Data, atoms: ase.Atoms, dtype: torch.dtype) -> None:
    for key, value in atoms.info.items():
        if key in _RESERVED_INFO or key == keys.CELL:
            continue
        if key in keys.PER_GRAPH_VECTOR_KEYS or key == keys.STRESS:
            arr = np.asarray(value, dtype=np.float64)
            shape = (1, 3, 3) if key == keys.STRESS else (1, 3)
            data[key] = torch.as_tensor(arr.reshape(shape), dtype=dtype)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            data[key] = torch.tensor([float(value)], dtype=dtype)
    for key in keys.PER_ATOM_KEYS:
        if key in atoms.arrays:
            data[key] = torch.as_tensor(np.asarray(atoms.arrays[key]), dtype=dtype)
