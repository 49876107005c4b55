"""molsym models and the one place that turns a PyG Batch into a model call."""

from __future__ import annotations

import torch

from molsym import keys
from molsym.errors import ConfigError
from molsym.models.base import AtomisticModel
from molsym.models.ensemble import EnsembleModel
from molsym.models.equivariant import EquivariantModel
from molsym.models.invariant import InvariantModel

#: Allowlist of model classes by short name (configs say ``model=equivariant``; deploy files
#: store the name, see ``AtomisticModel.model_name``).
MODEL_CLASSES: dict[str, type[AtomisticModel]] = {
    EquivariantModel.model_name: EquivariantModel,
    InvariantModel.model_name: InvariantModel,
}
#: What a deploy file may name: the architectures and committees of them.
DEPLOYABLE_CLASSES: dict[str, type[torch.nn.Module]] = {
    **MODEL_CLASSES, EnsembleModel.model_name: EnsembleModel,
}


def class_name(model: torch.nn.Module) -> str:
    """The allowlist name of ``model``'s class (:data:`molsym.models.DEPLOYABLE_CLASSES`)."""
    for name, cls in DEPLOYABLE_CLASSES.items():
        if type(model) is cls:
            return name
    raise ConfigError(
        f"{type(model).__name__} is not in molsym.models.DEPLOYABLE_CLASSES "
        f"{sorted(DEPLOYABLE_CLASSES)}; only allowlisted models can be deployed"
    )


def predict_batch(
    model: torch.nn.Module,
    batch,
    compute_forces: bool = True,
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``model`` on a PyG Batch (fields named as in :mod:`molsym.keys`) or a single Data.

    The cell is passed only when some graph is periodic or stress is wanted, so molecules skip
    the (zero) cell-shift term. Non-periodic batches whose graphs carry ``pair_index`` (one edge
    per pair, from ``atoms_to_graph``) pass it with ``paired_edges=True``, so the model does not
    search for the pairs at every call (and GPU batches get paired edges too); a batch whose
    pair lists do not cover its edges is passed as it is. Returns the model's output dict (see
    ``AtomisticModel.forward``).
    """
    z = batch[keys.ATOMIC_NUMBERS]
    if keys.BATCH in batch and batch[keys.BATCH] is not None:
        graph_of_atom, num_graphs = batch[keys.BATCH], int(batch.num_graphs)
    else:  # a single Data graph
        graph_of_atom, num_graphs = torch.zeros_like(z), 1
    periodic = compute_stress or (keys.PBC in batch and bool(batch[keys.PBC].any()))
    total_charge = batch[keys.TOTAL_CHARGE] if keys.TOTAL_CHARGE in batch else None
    edge_index, paired = batch[keys.EDGE_INDEX], None
    if not periodic and keys.PAIR_INDEX in batch:
        half = batch[keys.PAIR_INDEX]
        if 2 * half.shape[1] == edge_index.shape[1]:
            edge_index, paired = half, True
    return model(
        z,
        batch[keys.POSITIONS],
        edge_index,
        graph_of_atom,
        num_graphs,
        cell=batch[keys.CELL] if periodic else None,
        cell_shifts=batch[keys.CELL_SHIFTS] if periodic else None,
        compute_forces=compute_forces,
        compute_stress=compute_stress,
        total_charge=total_charge,
        paired_edges=paired,
    )


__all__ = [
    "DEPLOYABLE_CLASSES",
    "class_name",
    "MODEL_CLASSES",
    "EnsembleModel",
    "AtomisticModel",
    "EquivariantModel",
    "InvariantModel",
    "predict_batch",
]
