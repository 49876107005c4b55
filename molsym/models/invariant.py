"""Invariant baseline: SchNet-style continuous-filter convolutions on distances only."""

from __future__ import annotations

import torch
from torch import nn

from molsym.models.base import AtomisticModel, capture_config
from molsym.nn.interaction import CFConvInteraction
from molsym.nn.radial import BesselBasis, PolynomialCutoff, RadialMLP
from molsym.nn.readout import ScalarMLP


class InvariantModel(AtomisticModel):
    """SchNet-style model: features see only interatomic distances (E(3)-invariant by design).

    Arguments as :class:`~molsym.models.equivariant.EquivariantModel` (no ``l_max``); the
    dipole comes from atomic charges only (no vector features).
    """

    model_name = "invariant"

    def __init__(
        self,
        cutoff: float = 5.0,
        elements: list[int] = (1, 6, 7, 8, 9),
        outputs: list[str] = ("energy", "forces"),
        num_channels: int = 64,
        num_layers: int = 3,
        num_radial: int = 16,
        radial_hidden: int = 64,
        readout_hidden: int = 32,
        envelope_exponent: int = 6,
        avg_num_neighbors: float = 10.0,
        atomic_energies: list[float] | dict[str, float] | None = None,
        energy_scale: float = 1.0,
        property_mean: dict[str, float] | None = None,
        property_std: dict[str, float] | None = None,
        property_pooling: dict[str, str] | None = None,
        dipole_moment_from_vector: bool = True,
        exact_isolated_atoms: bool = True,
        short_range_repulsion: bool = False,
        repulsion_reach: float = 1.0,
        radial_floor: float = 0.0,
        closest_pairs: dict[str, float] | None = None,
    ):
        super().__init__()
        self._config = capture_config(locals())
        self._setup_common(
            cutoff, elements, outputs, atomic_energies, energy_scale, property_mean,
            property_std, property_pooling, num_channels, readout_hidden, vector_channels=None,
            dipole_moment_from_vector=dipole_moment_from_vector,
            exact_isolated_atoms=exact_isolated_atoms,
            short_range_repulsion=short_range_repulsion,
            repulsion_reach=repulsion_reach,
            radial_floor=radial_floor,
            closest_pairs=closest_pairs,
        )
        self.basis = BesselBasis(cutoff, num_radial)
        self.envelope = PolynomialCutoff(cutoff, envelope_exponent)
        self.embedding = nn.Embedding(len(self.elements), num_channels)
        self.interactions = nn.ModuleList(
            CFConvInteraction(num_channels, avg_num_neighbors) for _ in range(num_layers)
        )
        self.radial = RadialMLP(num_radial, radial_hidden, num_layers * num_channels)
        self.readout = ScalarMLP(num_channels, readout_hidden, bias=False)

    def representation(
        self,
        species: torch.Tensor,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        paired: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        length = torch.linalg.vector_norm(edge_vec, dim=-1)
        weights = self.radial_weights(self.radial_length(length, species, edge_index), paired)
        s = self.embedding(species)
        for interaction, w in zip(self.interactions, weights.chunk(len(self.interactions), 1),
                                  strict=True):
            s = s + interaction(s, w, edge_index, paired)
        return self.readout(s).squeeze(-1), s, None
