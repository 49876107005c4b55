"""Warnings for inputs outside what a model was trained on: predicted, but flagged.

A row gets a ``warning`` (not an ``error``: the numbers are computed) when the structure is
one the model has likely never seen:

- a periodic cell narrower than twice the cutoff (atoms see their own images), or any periodic
  structure for a model whose file does not record periodic training data
  (``metadata["statistics"]["periodic"]``);
- atoms without a neighbour within the cutoff (a lone atom, a far fragment);
- a net charge (``info["total_charge"]``, the RDKit formal charges of a SMILES): molsym's
  models take no charge input; the charge only fixes the sum of the predicted atomic charges
  (dipole), so ``[CH3+]`` and ``[CH3]`` get the same energy;
- for a model that predicts energy, a composition outside the span of the training
  compositions when those did not determine every per-element reference energy
  (``metadata["energy_reference"]``, e.g. a model trained on one molecule's frames): its
  energy zero is a guess (:func:`molsym.data.statistics.composition_covered`);
- two atoms closer than the model's radial floor for their elements (a fraction of the closest
  such pair in its training data, :class:`molsym.nn.radial.DistanceFloor`): there the learned
  energy no longer changes with their distance and only the short-range repulsion does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ase
import numpy as np

from molsym import keys

#: Warning of a composition whose energy zero the training compositions do not fix.
COMPOSITION_WARNING = ("composition outside the span of the training compositions: the energy "
                       "reference is not determined for it (energies of different compositions "
                       "are not comparable)")


def model_metadata(model: Any) -> dict:
    """The ``metadata`` of the deploy file of ``model`` (a path or pretrained name); {} for a
    model object or a file without it."""
    if not isinstance(model, (str, Path)):
        return {}
    from molsym.deploy.model_file import read_model_file

    metadata = read_model_file(model).get("metadata") or {}
    return metadata if isinstance(metadata, dict) else {}


def trained_on_periodic(model: Any, metadata: dict | None = None) -> bool:
    """Whether the deploy file of ``model`` (a path or pretrained name) records periodic
    training data; False for a model object or a file that does not say. ``metadata``:
    the file's metadata when already read (:func:`model_metadata`)."""
    metadata = model_metadata(model) if metadata is None else metadata
    stats = metadata.get("statistics")
    return bool(stats.get("periodic", False)) if isinstance(stats, dict) else False


def energy_reference(model: Any, metadata: dict | None = None) -> dict | None:
    """The ``metadata["energy_reference"]`` of the deploy file of ``model`` (a path or
    pretrained name); None for a model object or a file written before it was recorded."""
    metadata = model_metadata(model) if metadata is None else metadata
    ref = metadata.get("energy_reference")
    return ref if isinstance(ref, dict) and "elements" in ref else None


def composition_warning(numbers: np.ndarray, reference: dict | None) -> str:
    """:data:`COMPOSITION_WARNING` when the composition of ``numbers`` (atomic numbers) lies
    outside the span of the training compositions of ``reference``; '' otherwise."""
    from molsym.data.statistics import composition_covered

    if reference is None or reference.get("determined", True):
        return ""
    return "" if composition_covered(numbers, reference) else COMPOSITION_WARNING


def radial_floors(module: Any) -> dict[str, float] | None:
    """{``"Zi-Zj"``: Angstrom} of the radial floor of ``module`` (a model, a committee: its
    first member's, which all share); None for a model without one."""
    from molsym.nn.radial import DistanceFloor

    modules = module.modules() if hasattr(module, "modules") else ()
    floor = next((m for m in modules if isinstance(m, DistanceFloor)), None)
    return None if floor is None else floor.by_pair()


def close_pairs_warning(graph: Any, floors: dict[str, float] | None) -> str:
    """A warning naming the element pairs of ``graph`` (:func:`molsym.data.graph.
    atoms_to_graph`) closer than their floor in ``floors`` (:func:`radial_floors`); '' when
    none is or the model has no floor."""
    from ase.data import chemical_symbols

    from molsym.data.graph import edge_lengths
    from molsym.nn.radial import pair_key

    if not floors or not graph[keys.EDGE_INDEX].shape[1]:
        return ""
    length = edge_lengths(graph)
    z = graph[keys.ATOMIC_NUMBERS].numpy()
    index = graph[keys.EDGE_INDEX].numpy()
    close: dict[str, float] = {}
    for k in np.flatnonzero(length < max(floors.values())):
        key = pair_key(z[index[0, k]], z[index[1, k]])
        if key in floors and length[k] < floors[key]:
            close[key] = min(float(length[k]), close.get(key, np.inf))
    if not close:
        return ""
    pairs = ", ".join(
        f"{'-'.join(chemical_symbols[int(v)] for v in key.split('-'))} {d:.3g} Angstrom "
        f"(floor {floors[key]:.3g})" for key, d in sorted(close.items()))
    return (f"atoms closer than in the training data: {pairs}; the learned energy is flat "
            "there and only the short-range repulsion rises")


def cell_widths(cell: np.ndarray) -> np.ndarray:
    """Distance between opposite faces of the cell along each of its three vectors (3,)."""
    widths = np.zeros(3)
    for i in range(3):
        normal = np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])
        norm = np.linalg.norm(normal)
        widths[i] = abs(cell[i] @ normal) / norm if norm > 1e-12 else np.linalg.norm(cell[i])
    return widths


def extrapolation_warnings(atoms: ase.Atoms, edge_index: np.ndarray, cutoff: float,
                           periodic_training: bool = False) -> list[str]:
    """Warnings for one structure and its graph's ``edge_index`` (2, E); [] when none."""
    out = []
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        widths = cell_widths(np.asarray(atoms.cell[:], dtype=np.float64))[pbc]
        if widths.min() < 2 * cutoff:
            out.append(f"periodic cell {widths.min():.3g} Angstrom wide, less than twice the "
                       f"cutoff ({2 * cutoff:g} Angstrom): atoms see their own images")
        elif not periodic_training:
            out.append("periodic structure, but the model is not known to be trained on "
                       "periodic cells")
    lonely = len(atoms) - len(np.unique(edge_index[0])) if len(atoms) else 0
    if len(atoms) == 1:
        out.append(f"a lone atom: no neighbour within the cutoff ({cutoff:g} Angstrom)")
    elif lonely:
        out.append(f"{lonely} atom(s) without a neighbour within the cutoff "
                   f"({cutoff:g} Angstrom)")
    charge = float(atoms.info.get(keys.TOTAL_CHARGE, 0.0))
    if charge:
        out.append(f"net charge {charge:+g} e: the model takes no charge input (energies and "
                   f"orbitals as if neutral)")
    return out
