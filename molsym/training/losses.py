"""Weighted training losses on energies, forces, stress, dipoles and scalar properties.

Energies enter per atom (``(E_pred - E_ref) / N``) so that molecules of different size weigh
alike; forces, stress and dipoles are averaged over their components.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from molsym import keys
from molsym.errors import ConfigError


def target_keys(pred: Mapping[str, Tensor], batch) -> list[str]:
    """Keys both predicted by the model and labelled in ``batch`` (sorted)."""
    labels = set(batch.keys()) if callable(getattr(batch, "keys", None)) else set(batch)
    return sorted((set(pred) & labels) - keys.STRUCTURE_KEYS)


class Loss(nn.Module):
    """Sum over targets of ``weight * error(pred, label)``.

    Args:
        weights: weight per target name (``energy``, ``forces``, ``stress``, ``dipole`` or a
            scalar property such as ``homo``); targets not named get ``default_weight``.
            Energy errors are per atom (eV/atom), forces in eV/Angstrom.
        kind: ``"mse"`` or ``"huber"``.
        huber_delta: transition point of the Huber loss (internal units).
        default_weight: weight of a target that ``weights`` does not name.
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        kind: str = "mse",
        huber_delta: float = 0.01,
        default_weight: float = 1.0,
    ):
        super().__init__()
        if kind not in ("mse", "huber"):
            raise ConfigError(f"loss kind must be 'mse' or 'huber', got {kind!r}")
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}
        self.kind = kind
        self.huber_delta = float(huber_delta)
        self.default_weight = float(default_weight)

    def _error(self, pred: Tensor, ref: Tensor) -> Tensor:
        if self.kind == "mse":
            return torch.mean((pred - ref) ** 2)
        return nn.functional.huber_loss(pred, ref, delta=self.huber_delta)

    def forward(self, pred: Mapping[str, Tensor], batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss (scalar) and the unweighted term of each target.

        ``pred`` holds model outputs (``energy (B,)``, ``forces (N,3)``, ...); ``batch`` is a
        PyG Batch with labels of the same names (``energy (B,)``, ``forces (N,3)``, ...).
        """
        terms: dict[str, Tensor] = {}
        total = None
        for key in target_keys(pred, batch):
            weight = self.weights.get(key, self.default_weight)
            if weight == 0.0:
                continue
            p, ref = pred[key], batch[key].to(pred[key].dtype)
            if key == keys.ENERGY:
                n = batch[keys.NUM_ATOMS].to(p.dtype).reshape(-1)
                p, ref = p.reshape(-1) / n, ref.reshape(-1) / n
            else:
                p, ref = p.reshape(ref.shape), ref
            terms[key] = self._error(p, ref)
            total = weight * terms[key] if total is None else total + weight * terms[key]
        if total is None:
            raise ConfigError(
                f"no target to train on: the model predicts {sorted(pred)}, the data has "
                f"labels {sorted(set(batch.keys()) - keys.STRUCTURE_KEYS)}"
            )
        return total, terms
