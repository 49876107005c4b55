"""Refit a trained model's per-element energy shifts to its training energies.

Forces never see a constant, so during training only the (weak, noisy) energy term of the loss
pins the energy zero, and Adam moves each per-element shift by about one learning rate (meV) per
step whatever that gradient's size. The zero therefore wanders: on rMD17 ethanol the validation
energy MAE jumped between 2 and 28 meV from epoch to epoch while the force MAE fell steadily,
and at the end 19.7 of the 19.8 meV test energy MAE was one constant offset, the same on the
training frames.

After training the best shifts are a linear least-squares problem: with the network frozen,
``E_ref - E_pred = C @ delta`` for the composition matrix ``C`` (molecules x elements). This
module solves it on the training set, in the loss's per-atom weighting, and adds ``delta`` to
``atomic_energy_shift``. Forces, dipoles and other outputs do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from molsym import keys
from molsym.data.statistics import fit_atomic_energies


def _energies(model: nn.Module, graphs: Sequence[Data], batch_size: int,
              elements: Sequence[int] | None = None) -> tuple[np.ndarray, ...]:
    """Model energies (eV, float64) of ``graphs``, in order, without forces, batch by batch
    (``graphs`` may be a lazy on-disk dataset: nothing is kept but per-graph numbers). With
    ``elements`` also the label energies (G,) and the compositions (G, len(elements))."""
    from molsym.models import predict_batch

    device = next(model.parameters()).device
    col = None if elements is None else {int(z): c for c, z in enumerate(elements)}
    pred_out, ref_out, comp_out = [], [], []
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
            if col is not None:
                ref_out.append(batch[keys.ENERGY].double().reshape(-1).numpy())
                comp = np.zeros((batch.num_graphs, len(col)))
                cols = [col[int(z)] for z in batch[keys.ATOMIC_NUMBERS].tolist()]
                np.add.at(comp, (batch.batch.numpy(), cols), 1.0)
                comp_out.append(comp)
            pred = predict_batch(model, batch.to(device), compute_forces=False)
            pred_out.append(pred[keys.ENERGY].detach().double().reshape(-1).cpu().numpy())
    if not pred_out:
        return (np.zeros(0),) if col is None else (np.zeros(0), np.zeros(0), np.zeros((0, 0)))
    if col is None:
        return (np.concatenate(pred_out),)
    return np.concatenate(pred_out), np.concatenate(ref_out), np.concatenate(comp_out)


def refit_energy_shift(
    model: nn.Module, graphs: Sequence[Data], batch_size: int = 64
) -> dict[str, float] | None:
    """Add the least-squares correction of the per-element energy shifts on ``graphs``.

    The correction minimises the mean squared per-atom energy error of ``graphs`` (as the
    training loss weighs energies), with the smallest norm where the compositions do not fix
    every element (one molecule: only the total is fixed). Only ``model.atomic_energy_shift``
    changes.

    Returns:
        ``{"num_graphs", "mean_error_before_meV", "mae_before_meV", "mae_after_meV"}``: the
        energy errors (prediction - label) on ``graphs``, the last one measured again with the
        new shifts; or None when there is nothing to fit (no energy output, no energy labels, no
        shift parameter) or an energy is not finite; the model is then unchanged.
    """
    shift = getattr(model, "atomic_energy_shift", None)
    outputs = getattr(model, "outputs", [])
    if shift is None or keys.ENERGY not in outputs or len(graphs) == 0:
        return None
    labelled = [k for k in range(len(graphs)) if keys.ENERGY in graphs[k]]
    if not labelled:
        return None
    if len(labelled) < len(graphs):
        graphs = Subset(graphs, labelled)
    was_training = model.training
    model.eval()
    try:
        predicted, reference, composition = _energies(model, graphs, batch_size,
                                                      model.elements)
        num_atoms = composition.sum(axis=1, keepdims=True)
        residual = reference - predicted
        if not np.isfinite(residual).all():
            return None  # a non-finite label or prediction: leave the model as it is
        delta = fit_atomic_energies(composition / num_atoms, residual / num_atoms[:, 0])
        with torch.no_grad():
            shift.add_(torch.as_tensor(delta, dtype=shift.dtype, device=shift.device))
        after = _energies(model, graphs, batch_size)[0] - reference
    finally:
        model.train(was_training)
    return {
        "num_graphs": len(labelled),
        "mean_error_before_meV": float(-residual.mean() * 1e3),
        "mae_before_meV": float(np.abs(residual).mean() * 1e3),
        "mae_after_meV": float(np.abs(after).mean() * 1e3),
    }


class EpochShiftFit:
    """The least-squares shift correction of one training epoch, from the steps' own
    predictions (no extra forward pass): it accumulates the normal equations of
    ``C_atom @ delta = r_atom`` (per-atom compositions and per-atom energy residuals, the
    loss's weighting) and solves them at the epoch's end (:meth:`solve`).

    With ``module.energy_shift=refit`` (:class:`~molsym.training.MolsymModule`) the shifts
    then move only by these corrections, once an epoch, instead of by Adam steps of about
    the learning rate (10 meV at lr 0.01) at every step: the energy zero no longer wanders
    and the energy term trains the network on the energies' variation.
    """

    def __init__(self, num_elements: int):
        self.num_elements = int(num_elements)
        self.reset()

    def reset(self) -> None:
        self.normal = torch.zeros(self.num_elements, self.num_elements, dtype=torch.float64)
        self.right = torch.zeros(self.num_elements, dtype=torch.float64)

    @torch.no_grad()
    def add(self, predicted: torch.Tensor, reference: torch.Tensor, species: torch.Tensor,
            graph_of_atom: torch.Tensor) -> None:
        """One batch: energies (B,) predicted and labelled, species indices and graph index
        (N,) of its atoms."""
        comp = torch.zeros(predicted.shape[0], self.num_elements, dtype=torch.float64,
                           device=predicted.device)
        comp.index_put_((graph_of_atom, species), torch.ones_like(species, dtype=comp.dtype),
                        accumulate=True)
        atoms = comp.sum(1, keepdim=True).clamp_min(1.0)
        c = comp / atoms
        r = (reference.detach().double().reshape(-1) - predicted.detach().double()) / atoms[:, 0]
        if not torch.isfinite(r).all():
            return  # a non-finite prediction or label: this batch says nothing
        self.normal += (c.T @ c).cpu()
        self.right += (c.T @ r).cpu()

    def solve(self, reduce=None) -> torch.Tensor | None:
        """The correction (eV per element) of the epoch's batches (summed over ranks by
        ``reduce``), then cleared; None when no batch had energies."""
        both = torch.cat([self.normal.reshape(-1), self.right])
        if reduce is not None:
            both = reduce(both)
        self.reset()
        k = self.num_elements
        normal, right = both[: k * k].reshape(k, k), both[k * k:]
        if not bool(normal.abs().sum() > 0):
            return None
        # the minimum-norm solution where compositions do not fix every element (one
        # molecule: only its total), as refit_energy_shift
        return torch.from_numpy(np.linalg.lstsq(normal.numpy(), right.numpy(), rcond=1e-10)[0])
