"""Dataset statistics used to initialise models (computed on the training split only).

- per-element reference energies (eV): least squares on the composition matrix
  (``E_g ~ sum_e n_ge * E0_e``), or isolated-atom energies when given;
- mean number of neighbours per atom (edges / atoms) at the graph cutoff;
- RMS of the force components (eV/Angstrom), raw;
- mean and standard deviation of every scalar per-graph target (e.g. ``energy``, ``homo``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from molsym import keys
from molsym.errors import ConfigError


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
    graphs: Sequence[Data],
    isolated_atom_energies: dict[int, float] | None = None,
    energy_key: str = keys.ENERGY,
) -> DatasetStatistics:
    """Statistics of ``graphs`` (pass the training split only).

    Raises:
        ConfigError: no graph, or ``isolated_atom_energies`` lacks an element of the data.
    """
    if len(graphs) == 0:
        raise ConfigError("cannot compute statistics of an empty training set")
    zs = torch.cat([g[keys.ATOMIC_NUMBERS] for g in graphs])
    elements = sorted(int(z) for z in torch.unique(zs))
    num_atoms = int(zs.numel())
    num_edges = sum(int(g[keys.EDGE_INDEX].shape[1]) for g in graphs)

    forces = [g[keys.FORCES] for g in graphs if keys.FORCES in g]
    forces_rms = None
    if forces:
        f = torch.cat(forces).double()
        forces_rms = float(torch.sqrt((f * f).mean()))

    atomic_energies = residual_std = None
    has_energy = all(energy_key in g for g in graphs)
    if isolated_atom_energies is not None:
        missing = [z for z in elements if z not in isolated_atom_energies]
        if missing:
            raise ConfigError(f"isolated-atom energies lack element(s) {missing}")
        atomic_energies = [float(isolated_atom_energies[z]) for z in elements]
    if has_energy:
        comp = composition_matrix(graphs, elements)
        energies = np.array([float(g[energy_key].reshape(-1)[0]) for g in graphs])
        if atomic_energies is None:
            atomic_energies = fit_atomic_energies(comp, energies).tolist()
        residual = energies - comp @ np.asarray(atomic_energies)
        residual_std = float(residual.std())

    mean, std = _scalar_target_moments(graphs)
    return DatasetStatistics(
        elements=elements,
        atomic_energies=atomic_energies,
        avg_num_neighbors=num_edges / num_atoms,
        forces_rms=forces_rms,
        energy_residual_std=residual_std,
        target_mean=mean,
        target_std=std,
        num_graphs=len(graphs),
        num_atoms=num_atoms,
    )


def _scalar_target_moments(graphs: Sequence[Data]) -> tuple[dict, dict]:
    """Mean and (population) std of every (1,)-shaped float field present in all graphs."""
    skip = keys.STRUCTURE_KEYS
    first = graphs[0]
    names = [
        k
        for k in sorted(first.keys())
        if k not in skip
        and isinstance(first[k], torch.Tensor)
        and first[k].is_floating_point()
        and tuple(first[k].shape) == (1,)
        and all(k in g for g in graphs)
    ]
    mean, std = {}, {}
    for name in names:
        values = torch.cat([g[name].reshape(1) for g in graphs]).double()
        mean[name] = float(values.mean())
        std[name] = float(values.std(unbiased=False)) if values.numel() > 1 else 0.0
        if not math.isfinite(mean[name]):
            raise ConfigError(f"target {name!r} has non-finite values in the training set")
    return mean, std
