"""Dataset statistics used to initialise models (computed on the training split only).

- per-element reference energies (eV): least squares on the composition matrix
  (``E_g ~ sum_e n_ge * E0_e``), or isolated-atom energies when given;
- mean number of neighbours per atom (edges / atoms) at the graph cutoff;
- the shortest distance between atoms of each element pair (Angstrom);
- RMS of the force components (eV/Angstrom), raw;
- mean and standard deviation of every scalar per-graph target (e.g. ``energy``, ``homo``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from molsym import keys
from molsym.data.graph import edge_lengths
from molsym.errors import ConfigError
from molsym.nn.radial import pair_key


@dataclass
class DatasetStatistics:
    """Statistics of a training set; :meth:`to_dict` gives JSON-able model arguments.

    Attributes:
        elements: sorted atomic numbers present.
        atomic_energies: reference energy per element (eV), aligned with ``elements``.
        avg_num_neighbors: mean number of neighbours per atom within the cutoff.
        forces_rms: RMS of all force components (eV/Angstrom), None without forces.
        energy_residual_std: std of (energy - sum of reference energies) per structure (eV),
            None without energies.
        target_mean, target_std: mean/std of each scalar per-graph target (its own unit).
        num_graphs, num_atoms: size of the training set.
        energy_reference: whether the training compositions determine every per-element
            reference energy (:func:`energy_reference`); None without energies.
        closest_pairs: {``"Zi-Zj"`` (:func:`~molsym.nn.radial.pair_key`): the shortest
            distance (Angstrom) between two such atoms within the cutoff}; pairs never
            that close are absent.
    """

    elements: list[int]
    atomic_energies: list[float] | None
    avg_num_neighbors: float
    forces_rms: float | None
    energy_residual_std: float | None
    target_mean: dict[str, float] = field(default_factory=dict)
    target_std: dict[str, float] = field(default_factory=dict)
    num_graphs: int = 0
    num_atoms: int = 0
    energy_reference: dict | None = None
    closest_pairs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain Python floats, ints, lists and dicts (JSON-able)."""
        return {
            "elements": [int(z) for z in self.elements],
            "atomic_energies": None
            if self.atomic_energies is None
            else [float(e) for e in self.atomic_energies],
            "avg_num_neighbors": float(self.avg_num_neighbors),
            "forces_rms": None if self.forces_rms is None else float(self.forces_rms),
            "energy_residual_std": None
            if self.energy_residual_std is None
            else float(self.energy_residual_std),
            "target_mean": {k: float(v) for k, v in self.target_mean.items()},
            "target_std": {k: float(v) for k, v in self.target_std.items()},
            "num_graphs": int(self.num_graphs),
            "num_atoms": int(self.num_atoms),
            "energy_reference": self.energy_reference,
            "closest_pairs": {k: float(v) for k, v in sorted(self.closest_pairs.items())},
        }


def composition_matrix(graphs: Sequence[Data], elements: Sequence[int]) -> np.ndarray:
    """(G, len(elements)) count of each element in each graph."""
    col = {int(z): c for c, z in enumerate(elements)}
    out = np.zeros((len(graphs), len(elements)))
    for g, data in enumerate(graphs):
        zs, counts = np.unique(data[keys.ATOMIC_NUMBERS].numpy(), return_counts=True)
        for z, c in zip(zs, counts, strict=True):
            out[g, col[int(z)]] = c
    return out


def fit_atomic_energies(composition: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Least-squares per-element energies (eV): ``composition @ E0 ~ energies``.

    ``composition`` (G, K), ``energies`` (G,). When the compositions do not determine every
    element (e.g. one molecule in many geometries) this is the minimum-norm solution.
    """
    solution, *_ = np.linalg.lstsq(composition, energies, rcond=None)
    return solution


def energy_reference(composition: np.ndarray, elements: Sequence[int],
                     isolated: bool = False) -> dict:
    """Whether the compositions ``composition`` (G, K) of a training set determine the K
    per-element reference energies (rank K), or only some combinations of them (one molecule
    in many geometries: only its total).

    Returns a JSON-able dict, stored in the deploy file's ``metadata["energy_reference"]``::

        {"determined": bool, "elements": [Z, ...], "undetermined_elements": [Z, ...],
         "compositions": [[count per element], ...]}

    ``compositions`` are linearly independent training compositions (at most K, integer
    counts aligned with ``elements``) that span those of the training set. Isolated-atom
    energies (``isolated``) determine every element.
    """
    elements = [int(z) for z in elements]
    unique = np.unique(np.asarray(composition, dtype=np.int64), axis=0)
    basis: list[np.ndarray] = []
    for row in unique:  # greedy: keep the rows that raise the rank
        if np.linalg.matrix_rank(np.array([*basis, row], dtype=float)) > len(basis):
            basis.append(row)
        if len(basis) == len(elements):
            break
    undetermined: list[int] = []
    if len(basis) < len(elements) and not isolated:
        _, _, vt = np.linalg.svd(np.array(basis, dtype=float).reshape(-1, len(elements)))
        null = vt[len(basis):]  # (K - rank, K): directions the energies never see
        undetermined = [z for z, col in zip(elements, null.T, strict=True)
                        if np.abs(col).max() > 1e-8]
    return {"determined": not undetermined, "elements": elements,
            "undetermined_elements": undetermined,
            "compositions": [[int(c) for c in row] for row in basis]}


def composition_covered(composition, reference: dict | None) -> bool:
    """Whether a model's energy zero is known for ``composition``: True when its elements
    were all trained on and its composition lies in the span of the training compositions
    (``reference``: a deploy file's ``metadata["energy_reference"]``; None, as in files
    written before it was recorded: True).

    ``composition``: ``{Z: count}`` or a sequence of atomic numbers (one per atom). A model
    trained on one molecule knows the total energy zero of that molecule (and multiples of
    it) only: for water after aspirin this is False, and the energy is meaningless (forces
    and energy differences between geometries of the trained composition are fine).
    """
    if reference is None:
        return True
    if not isinstance(composition, Mapping):
        zs, counts = np.unique(np.asarray(composition, dtype=np.int64), return_counts=True)
        composition = dict(zip(zs.tolist(), counts.tolist(), strict=True))
    elements = [int(z) for z in reference["elements"]]
    if any(int(z) not in elements for z, n in composition.items() if n):
        return False
    if reference.get("determined", True):
        return True
    v = np.array([float(composition.get(z, 0)) for z in elements])
    basis = np.array(reference["compositions"], dtype=float).reshape(-1, len(elements))
    if not basis.size:
        return not v.any()
    x, *_ = np.linalg.lstsq(basis.T, v, rcond=None)
    return bool(np.linalg.norm(basis.T @ x - v) <= 1e-6 * max(1.0, float(np.linalg.norm(v))))


def read_isolated_atom_energies(path: str | Path) -> dict[int, float]:
    """Energies (eV) of single-atom frames of an extxyz-like file, by atomic number.

    Raises:
        ConfigError: missing file, a frame with more than one atom or without an energy.
    """
    from molsym.data.dataset import read_structures

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"isolated-atom energy file not found: {path}")
    out: dict[int, float] = {}
    for idx, atoms in enumerate(read_structures(path)):
        if len(atoms) != 1 or keys.ENERGY not in atoms.info:
            raise ConfigError(
                f"{path}: frame {idx} must be one atom with an energy (isolated-atom file)"
            )
        out[int(atoms.numbers[0])] = float(atoms.info[keys.ENERGY])
    return out


def compute_statistics(
    graphs: Iterable[Data],
    isolated_atom_energies: dict[int, float] | None = None,
    energy_key: str = keys.ENERGY,
) -> DatasetStatistics:
    """Statistics of ``graphs`` (pass the training split only), in one streaming pass: each
    graph is read once and dropped; what is kept per graph is its composition, its energy and
    its scalar targets (a few numbers), so an on-disk store is never held in memory.

    Raises:
        ConfigError: no graph, or ``isolated_atom_energies`` lacks an element of the data.
    """
    acc = _Accumulator(energy_key)
    for g in graphs:
        acc.add(g)
    if acc.num_graphs == 0:
        raise ConfigError("cannot compute statistics of an empty training set")
    elements = sorted(acc.element_counts)
    forces_rms = None
    if acc.force_components:
        forces_rms = math.sqrt(acc.force_square_sum / acc.force_components)

    atomic_energies = residual_std = reference = None
    if isolated_atom_energies is not None:
        missing = [z for z in elements if z not in isolated_atom_energies]
        if missing:
            raise ConfigError(f"isolated-atom energies lack element(s) {missing}")
        atomic_energies = [float(isolated_atom_energies[z]) for z in elements]
    if acc.has_energy:
        comp = acc.composition(elements)
        energies = np.asarray(acc.energies)
        if atomic_energies is None:
            atomic_energies = fit_atomic_energies(comp, energies).tolist()
        residual = energies - comp @ np.asarray(atomic_energies)
        residual_std = float(residual.std())
        reference = energy_reference(comp, elements, isolated_atom_energies is not None)

    mean, std = acc.target_moments()
    return DatasetStatistics(
        elements=elements,
        atomic_energies=atomic_energies,
        avg_num_neighbors=acc.num_edges / acc.num_atoms,
        forces_rms=forces_rms,
        energy_residual_std=residual_std,
        target_mean=mean,
        target_std=std,
        num_graphs=acc.num_graphs,
        num_atoms=acc.num_atoms,
        energy_reference=reference,
        closest_pairs=dict(acc.closest_pairs),
    )


class _Accumulator:
    """What :func:`compute_statistics` keeps of the graphs it has seen."""

    def __init__(self, energy_key: str):
        self.energy_key = energy_key
        self.num_graphs = self.num_atoms = self.num_edges = 0
        self.element_counts: dict[int, int] = {}
        # compositions packed flat (a few bytes per graph): elements, counts, graph offsets
        self._zs, self._counts, self._offsets = array("h"), array("l"), array("q", [0])
        self.force_square_sum, self.force_components = 0.0, 0
        self.closest_pairs: dict[str, float] = {}
        self.has_energy = True
        self.energies = array("d")
        self.targets: dict[str, array] | None = None

    def add(self, g: Data) -> None:
        z = g[keys.ATOMIC_NUMBERS]
        zs, counts = np.unique(z.numpy(), return_counts=True)
        self._zs.extend(zs.tolist())
        self._counts.extend(counts.tolist())
        self._offsets.append(len(self._zs))
        for el, c in zip(zs.tolist(), counts.tolist(), strict=True):
            self.element_counts[el] = self.element_counts.get(el, 0) + c
        self.num_graphs += 1
        self.num_atoms += int(z.numel())
        self.num_edges += int(g[keys.EDGE_INDEX].shape[1])
        self._add_closest_pairs(g)
        if keys.FORCES in g:
            f = g[keys.FORCES].double()
            self.force_square_sum += float((f * f).sum())
            self.force_components += f.numel()
        if self.has_energy and self.energy_key in g:
            self.energies.append(float(g[self.energy_key].reshape(-1)[0]))
        else:
            self.has_energy, self.energies = False, array("d")
        if self.targets is None:  # the scalar float fields of the first graph
            self.targets = {k: array("d") for k in sorted(g.keys()) if k not in keys.STRUCTURE_KEYS
                            and isinstance(g[k], torch.Tensor) and g[k].is_floating_point()
                            and tuple(g[k].shape) == (1,)}
        for name in list(self.targets):
            if name in g:
                self.targets[name].append(float(g[name].reshape(-1)[0]))
            else:
                del self.targets[name]  # only targets that every graph has

    def _add_closest_pairs(self, g: Data) -> None:
        """Lower :attr:`closest_pairs` with the edges of ``g`` (periodic images included)."""
        index = g[keys.EDGE_INDEX]
        if index.shape[1] == 0:
            return
        length = edge_lengths(g)
        z = g[keys.ATOMIC_NUMBERS].numpy()
        z_i, z_j = z[index[0].numpy()], z[index[1].numpy()]
        code = np.minimum(z_i, z_j) * 1000 + np.maximum(z_i, z_j)
        codes, which = np.unique(code, return_inverse=True)
        shortest = np.full(len(codes), np.inf)
        np.minimum.at(shortest, which, length)
        for c, d in zip(codes.tolist(), shortest.tolist(), strict=True):
            key = pair_key(c // 1000, c % 1000)
            self.closest_pairs[key] = min(d, self.closest_pairs.get(key, math.inf))

    def composition(self, elements: list[int]) -> np.ndarray:
        lookup = np.zeros(max(elements) + 1, dtype=np.int64)
        lookup[np.asarray(elements)] = np.arange(len(elements))
        offsets = np.frombuffer(self._offsets, dtype=np.int64)
        rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        out = np.zeros((len(offsets) - 1, len(elements)))
        cols = lookup[np.frombuffer(self._zs, dtype=np.int16).astype(np.int64)]
        out[rows, cols] = np.frombuffer(self._counts, dtype=np.dtype("l"))
        return out

    def target_moments(self) -> tuple[dict, dict]:
        """Mean and (population) std of every scalar target present in all graphs."""
        mean, std = {}, {}
        for name, values in (self.targets or {}).items():
            arr = np.asarray(values)
            mean[name] = float(arr.mean())
            std[name] = float(arr.std()) if arr.size > 1 else 0.0
            if not math.isfinite(mean[name]):
                raise ConfigError(f"target {name!r} has non-finite values in the training set")
        return mean, std


