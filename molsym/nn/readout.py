"""Readout heads: small MLPs on scalar features and equivariant vector readouts."""

from __future__ import annotations

import torch
from torch import nn


class ScalarMLP(nn.Module):
    """``Linear -> SiLU -> Linear`` from (N, C) features to (N, out) values.

    ``bias=False`` drops the last bias (atomic energies: the per-element shift plays its role).
    """

    def __init__(self, in_channels: int, hidden: int, out_features: int = 1, bias: bool = True):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.SiLU(), nn.Linear(hidden, out_features, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VectorReadout(nn.Module):
    """Linear, bias-free map of vector features (3, N, C) to one polar vector per atom (N, 3)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_channels) * in_channels**-0.5)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return (v @ self.weight).transpose(0, 1)
