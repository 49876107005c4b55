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
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from molsym import keys
from molsym.data.statistics import composition_matrix, fit_atomic_energies


def _energies(model: nn.Module, graphs: Sequence[Data], batch_size: int) -> np.ndarray:
    """Model energies (eV, float64) of ``graphs``, in order, without forces."""
    from molsym.models import predict_batch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
            pred = predict_batch(model, batch.to(device), compute_forces=False)
            out.append(pred[keys.ENERGY].detach().double().reshape(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


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
    labelled = [g for g in graphs if keys.ENERGY in g and g[keys.ENERGY] is not None]
    if shift is None or keys.ENERGY not in outputs or not labelled:
        return None
    reference = np.array([float(g[keys.ENERGY].reshape(-1)[0]) for g in labelled])
    composition = composition_matrix(labelled, model.elements)
    num_atoms = composition.sum(axis=1, keepdims=True)
    was_training = model.training
    model.eval()
    try:
        residual = reference - _energies(model, labelled, batch_size)
        if not np.isfinite(residual).all():
            return None  # a non-finite label or prediction: leave the model as it is
        delta = fit_atomic_energies(composition / num_atoms, residual / num_atoms[:, 0])
        with torch.no_grad():
            shift.add_(torch.as_tensor(delta, dtype=shift.dtype, device=shift.device))
        after = _energies(model, labelled, batch_size) - reference
    finally:
        model.train(was_training)
    return {
        "num_graphs": len(labelled),
        "mean_error_before_meV": float(-residual.mean() * 1e3),
        "mae_before_meV": float(np.abs(residual).mean() * 1e3),
        "mae_after_meV": float(np.abs(after).mean() * 1e3),
    }
