"""Radial functions of the interatomic distance: Bessel basis and smooth cutoff envelope."""

from __future__ import annotations

import math

import torch
from ase.data import covalent_radii
from torch import nn

from molsym.errors import ConfigError


class BesselBasis(nn.Module):
    """``sqrt(2/rc) * sin(n pi d / rc) / d`` for ``n = 1..num_radial``.

    Input: distances ``d`` (E,) in Angstrom (> 0). Output: (E, num_radial), 1/Angstrom.
    The frequencies are a fixed buffer, or with ``trainable`` a parameter initialised to the
    same values (as NequIP's basis); either way saved as ``freqs``, so files load both ways.
    """

    def __init__(self, cutoff: float, num_radial: int = 8, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        freqs = torch.arange(1, num_radial + 1, dtype=torch.get_default_dtype()) * math.pi
        if trainable:
            self.freqs = nn.Parameter(freqs / self.cutoff)
        else:
            self.register_buffer("freqs", freqs / self.cutoff)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, d: torch.Tensor, freqs: torch.Tensor | None = None) -> torch.Tensor:
        """``freqs``: other frequencies than this basis' own, broadcast against ``d[..., None]``
        (a committee's stacked members: (M, num_radial) for distances (E, M))."""
        d = d.unsqueeze(-1)
        return self.prefactor * torch.sin((self.freqs if freqs is None else freqs) * d) / d


class PolynomialCutoff(nn.Module):
    """Smooth envelope ``f(x)``, ``x = d / rc``: 1 at 0, and f, f', f'' vanish at ``x = 1``.

    ``f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x < 1``, else 0.
    Input (E,) distances in Angstrom; output (E,) dimensionless.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = d / self.cutoff
        xp = x**p
        f = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * xp
            + p * (p + 2) * xp * x
            - 0.5 * p * (p + 1) * xp * x * x
        )
        return torch.where(x < 1.0, f, torch.zeros_like(f))


class RadialMLP(nn.Module):
    """Edge weights from the radial basis: ``Linear -> SiLU (-> Linear -> SiLU) x (L-1) ->
    Linear`` times the envelope, ``L = num_layers`` hidden layers (1: the original network).

    Input: basis (E, num_radial), envelope (E,). Output (E, out_features); every output goes to
    zero smoothly at the cutoff because the last layer has no bias and is scaled by the envelope.
    """

    def __init__(self, num_radial: int, hidden: int, out_features: int, num_layers: int = 1):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"RadialMLP: num_layers must be >= 1, got {num_layers}")
        self.lin1 = nn.Linear(num_radial, hidden)
        # extra hidden layers only when asked: a 1-layer network keeps the saved keys
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_layers - 1))
        self.lin2 = nn.Linear(hidden, out_features, bias=False)
        self.act = nn.SiLU()

    def _hidden(self, basis: torch.Tensor) -> torch.Tensor:
        x = self.act(self.lin1(basis))
        for layer in self.hidden:
            x = self.act(layer(x))
        return x

    def forward(self, basis: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        return self.lin2(self._hidden(basis)) * envelope.unsqueeze(-1)

    def output_slice(self, basis: torch.Tensor, envelope: torch.Tensor, start: int,
                     stop: int) -> torch.Tensor:
        """Outputs ``start:stop`` of :meth:`forward` only (E, stop - start)."""
        weight = self.lin2.weight[start:stop]
        return nn.functional.linear(self._hidden(basis), weight) * envelope.unsqueeze(-1)


def pair_key(z_i: int, z_j: int) -> str:
    """The key of an element pair in a ``closest_pairs`` table: ``"Zlow-Zhigh"``, e.g. ``"1-8"``."""
    low, high = sorted((int(z_i), int(z_j)))
    return f"{low}-{high}"


class DistanceFloor(nn.Module):
    """Edge lengths as the radial network sees them: never much shorter than the training
    data brought each element pair, so that the learned energy does not extrapolate into
    distances no example sampled (where a smooth network can fall without bound: a hole).

    ``r' = f + w softplus((r - f) / w)``: ``r`` itself (to rounding, exactly beyond
    ``f + 20 w``) above the floor ``f`` of the pair, tending smoothly (every derivative) to
    ``f`` below it; ``w`` = :attr:`SOFTNESS`. Closer than the floor, only a short-range prior
    (the ZBL repulsion) still changes the energy with the distance.

    Args:
        elements: atomic numbers, in the model's species order.
        closest_pairs: {``pair_key``: the shortest distance (Angstrom) between atoms of that
            pair in the training set}, e.g. from :func:`molsym.data.statistics.
            compute_statistics`.
        fraction: the floor of a pair, as a fraction of its closest training distance
            (below 1: a small extrapolation is kept, e.g. for hotter MD than trained on).
            Pairs the training set never brought within the cutoff get their covalent
            distance (``ase.data.covalent_radii`` summed): nothing says how they bond.
    """

    #: Width (Angstrom) of the smooth step from ``r`` to the floor.
    SOFTNESS = 0.05

    def __init__(self, elements: list[int], closest_pairs: dict[str, float], fraction: float):
        super().__init__()
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"radial_floor must be in (0, 1], got {fraction}")
        floors = torch.zeros(len(elements), len(elements), dtype=torch.float64)
        for a, z_a in enumerate(elements):
            for b, z_b in enumerate(elements):
                closest = closest_pairs.get(pair_key(z_a, z_b))
                floors[a, b] = (float(fraction) * float(closest) if closest is not None
                                else float(covalent_radii[int(z_a)] + covalent_radii[int(z_b)]))
        self.register_buffer("floor", floors, persistent=False)  # rebuilt from the config
        self.elements = [int(z) for z in elements]

    def by_pair(self) -> dict[str, float]:
        """{``pair_key``: floor in Angstrom} of every element pair of the model."""
        table = self.floor.tolist()
        return {pair_key(z_a, z_b): float(table[a][b])
                for a, z_a in enumerate(self.elements) for b, z_b in enumerate(self.elements)
                if z_a <= z_b}

    def forward(self, length: torch.Tensor, s_i: torch.Tensor, s_j: torch.Tensor) -> torch.Tensor:
        """Lengths (E, ...) in Angstrom (trailing axes, e.g. a committee's members, broadcast)
        of edges between species indices ``s_i``, ``s_j`` (E,)."""
        num = self.floor.shape[0]
        floor = self.floor.reshape(-1).index_select(0, s_i * num + s_j).to(length.dtype)
        floor = floor.view([-1] + [1] * (length.dim() - 1))
        w = self.SOFTNESS
        return floor + w * nn.functional.softplus((length - floor) / w)
