"""The flagship: an E(3)-equivariant Cartesian-tensor message-passing network.

Features are scalars, polar vectors and (``l_max = 2``) traceless symmetric rank-2 tensors,
stored together as (K, N, C) (see :mod:`molsym.nn.cartesian`). Each layer builds the
two-body neighbour density ``A`` (:class:`~molsym.nn.CartesianInteraction`), raises the body
order with node-level tensor products (:class:`~molsym.nn.ProductBlock`, up to 4-body per
layer) and adds the result to the features (residual). Atomic energies are read out from the
scalars of every layer and summed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from molsym.models.base import AtomisticModel, capture_config
from molsym.nn.cartesian import ProductBlock, SpeciesLinear, edge_tensors, num_components
from molsym.nn.chunks import (
    AUTO,
    EDGE_CHUNK,
    edge_chunk_bounds,
    lean_malloc,
    should_chunk,
    take_edges,
)
from molsym.nn.interaction import CartesianInteraction
from molsym.nn.radial import BesselBasis, PolynomialCutoff, RadialMLP
from molsym.nn.readout import ScalarMLP


class EquivariantModel(AtomisticModel):
    """E(3)-equivariant Cartesian message passing (the default molsym model).

    Args:
        cutoff: radial cutoff in Angstrom.
        elements: atomic numbers the model handles.
        outputs: any of "energy", "forces", "stress", "dipole" and scalar property names.
        num_channels: channels C per feature (all l share C).
        num_layers: message-passing layers.
        l_max: highest tensor rank of the features (0, 1 or 2).
        num_radial: Bessel basis functions; radial_hidden: hidden width of the radial MLP.
        readout_hidden: hidden width of the last readout and the property heads.
        envelope_exponent: p of the polynomial cutoff envelope.
        trainable_basis: train the Bessel frequencies (initialised at ``n pi / cutoff``);
            off by default, as in models saved before this option.
        full_paths: also couple neighbour features through higher edge harmonics (Y2-Y4 into
            l <= l_max, see :class:`~molsym.nn.CartesianInteraction`); off by default, so
            models saved before it load unchanged.
        radial_layers: hidden layers of the radial MLP (1, the default, as in models saved
            before this option; MACE uses 3).
        more_scalars: the product blocks also form the 4-body scalars ``a0 b0 b0``,
            ``(b1.b1) a0``, ``(a2:b2) b0`` and ``b1^T b2 a1`` (:func:`~molsym.nn.cartesian.
            product_terms`); off by default, so saved models load unchanged.
        species_linear: an element-dependent channel mixing of each layer's update
            (:class:`~molsym.nn.cartesian.SpeciesLinear`, like MACE's element-dependent
            weights); off by default, so saved models load unchanged.
        species_products: each product of each layer's product block weighed per element
            and channel (:class:`~molsym.nn.cartesian.ProductBlock`, MACE's element-dependent
            contraction weights); off by default, so saved models load unchanged.
        rank3_density: the neighbour density ``A`` of each layer also carries rank-3 (l = 3)
            tensors, which the product block turns into l <= 2 features (MACE's density goes
            to l = 3 too); it acts at l_max 2 only (below, there is nothing to build it
            from, as for ``full_paths``); off by default, so saved models load unchanged.
        avg_num_neighbors: normalisation of the neighbour sums (dataset mean).
        atomic_energies: per-element energy shift in eV, list aligned with ``elements`` or
            {str(Z): eV}; learnable, initialised from these values (default 0).
        energy_scale: initial per-element scale of the atomic energies (e.g. force RMS), eV.
        property_mean, property_std: {name: value} de-normalisation of scalar heads.
        property_pooling: {name: "mean" | "sum"}; default "mean" (intensive).
        dipole_moment_from_vector: a ``dipole_moment`` output (QM9's magnitude) is the norm
            of the equivariant dipole vector (charges x positions + atomic dipoles), exactly
            zero where symmetry forbids a dipole; False: a free scalar head (as in models
            saved before this option, which load with False).
        exact_isolated_atoms: an atom without neighbours has exactly its element's energy
            shift as energy (the network's output for a lone atom is subtracted), so a
            molecule pulled apart tends to the sum of its atoms' shifts (with
            ``data.isolated_atom_energies_path``: the isolated atoms' reference energies);
            models saved before this option load with False.
        short_range_repulsion: add a fixed ZBL nuclear repulsion between atoms closer than
            the sum of their covalent radii (:class:`~molsym.nn.repulsion.ZBLRepulsion`), so
            the energy keeps rising where no training set samples; off by default (models
            saved before this option load without it).
        repulsion_reach: where the prior ends, as a fraction of the covalent distance.
        radial_floor: the radial network sees no edge shorter than this fraction of the
            closest distance of its element pair in ``closest_pairs``
            (:class:`~molsym.nn.radial.DistanceFloor`): nearer, the learned energy stays
            flat and only the repulsion prior rises, instead of extrapolating into a hole;
            0 (the class default, as in models saved before the option): no floor.
        closest_pairs: {``"Zi-Zj"``: Angstrom}, the shortest distance of each element pair
            in the training set (``molsym train`` fills it in).
    """

    model_name = "equivariant"

    def __init__(
        self,
        cutoff: float = 5.0,
        elements: list[int] = (1, 6, 7, 8, 9),
        outputs: list[str] = ("energy", "forces"),
        num_channels: int = 32,
        num_layers: int = 2,
        l_max: int = 2,
        num_radial: int = 8,
        radial_hidden: int = 64,
        readout_hidden: int = 16,
        envelope_exponent: int = 6,
        trainable_basis: bool = False,
        full_paths: bool = False,
        radial_layers: int = 1,
        more_scalars: bool = False,
        species_linear: bool = False,
        species_products: bool = False,
        rank3_density: bool = False,
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
        num_components(l_max)  # validates l_max
        rank3_density = bool(rank3_density) and l_max == 2  # built from rank-2 couplings
        self._setup_common(
            cutoff, elements, outputs, atomic_energies, energy_scale, property_mean,
            property_std, property_pooling, num_channels, readout_hidden,
            vector_channels=num_channels if l_max >= 1 else None,
            dipole_moment_from_vector=dipole_moment_from_vector,
            exact_isolated_atoms=exact_isolated_atoms,
            short_range_repulsion=short_range_repulsion,
            repulsion_reach=repulsion_reach,
            radial_floor=radial_floor,
            closest_pairs=closest_pairs,
        )
        self.l_max = int(l_max)
        self.basis = BesselBasis(cutoff, num_radial, trainable_basis)
        self.envelope = PolynomialCutoff(cutoff, envelope_exponent)
        self.embedding = nn.Embedding(len(self.elements), num_channels)
        self.interactions = nn.ModuleList(
            CartesianInteraction(
                num_channels, 0 if t == 0 else l_max, l_max, avg_num_neighbors, full_paths,
                rank3_density,
            )
            for t in range(num_layers)
        )
        # one radial network for all layers and paths: one matmul instead of one per layer
        self.weight_sizes = [i.num_paths * num_channels for i in self.interactions]
        self.radial = RadialMLP(num_radial, radial_hidden, sum(self.weight_sizes), radial_layers)
        self.products = nn.ModuleList(
            ProductBlock(num_channels, l_max, more_scalars,
                         len(self.elements) if species_products else 0, rank3_density)
            for _ in range(num_layers))
        self.species_mixing = nn.ModuleList(
            SpeciesLinear(len(self.elements), num_channels, l_max) for _ in range(num_layers)
        ) if species_linear else None
        self.readouts = nn.ModuleList(
            [nn.Linear(num_channels, 1, bias=False) for _ in range(num_layers - 1)]
            + [ScalarMLP(num_channels, readout_hidden, bias=False)]
        )
        #: graphs with more than ``chunk_above`` edges (0: none; "auto": those that would not
        #: fit unchunked in ``memory_limit`` or the memory available) are evaluated in chunks
        #: of ``edge_chunk`` edges (:mod:`molsym.nn.chunks`; eager mode only). Run-time
        #: settings, not part of the config.
        self.edge_chunk = EDGE_CHUNK
        self.chunk_above: int | str = AUTO
        self.memory_limit: int | str | None = None

    def representation(
        self,
        species: torch.Tensor,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        paired: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not torch.compiler.is_compiling() and self.chunks_edges(edge_vec.shape[0]):
            return self._chunked_representation(species, edge_vec, edge_index, paired)
        length = torch.linalg.vector_norm(edge_vec, dim=-1)  # (E,)
        unit, _ = edge_tensors(edge_vec / length.unsqueeze(-1), min(self.l_max, 1))  # (3, E)
        weights = self.radial_weights(self.radial_length(length, species, edge_index), paired)
        h = self.embedding(species).unsqueeze(0)  # (1, N, C): scalars only
        node_energy = torch.zeros_like(species, dtype=h.dtype)
        for t, (interaction, product, readout, w) in enumerate(zip(
            self.interactions, self.products, self.readouts,
            weights.split(self.weight_sizes, dim=1), strict=True,
        )):
            h = self._add_update(t, h, product(interaction(h, unit, w, edge_index, paired),
                                               species), species)
            node_energy = node_energy + readout(h[0]).squeeze(-1)
        vectors = h[1:4] if self.l_max >= 1 else None
        return node_energy, h[0], vectors

    def _add_update(self, t: int, h: torch.Tensor, update: torch.Tensor,
                    species: torch.Tensor) -> torch.Tensor:
        """``h`` after layer ``t``'s ``update`` (mixed per element when ``species_linear``);
        the one place both the whole-graph and the edge-chunked paths add a layer."""
        if self.species_mixing is not None:
            update = self.species_mixing[t](update, species)
        if h.shape[0] < update.shape[0]:  # first layer: scalars only so far
            h = torch.nn.functional.pad(h, (0, 0, 0, 0, 0, update.shape[0] - h.shape[0]))
        return h + update

    def chunks_edges(self, num_edges: int) -> bool:
        """Whether a graph of ``num_edges`` edges is evaluated in edge chunks (eager mode;
        :func:`molsym.nn.chunks.should_chunk`)."""
        return should_chunk(self, num_edges)

    def _chunked_representation(
        self,
        species: torch.Tensor,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        paired: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`representation` with every interaction summed over edge chunks of at most
        ``edge_chunk`` edges, each checkpointed (same result to rounding, bounded memory)."""
        lean_malloc()
        h = self.embedding(species).unsqueeze(0)
        node_energy = torch.zeros_like(species, dtype=h.dtype)
        offsets = [0]
        for size in self.weight_sizes:
            offsets.append(offsets[-1] + size)
        bounds = list(edge_chunk_bounds(edge_vec.shape[0], self.edge_chunk, paired))
        for t, (interaction, product, readout) in enumerate(
            zip(self.interactions, self.products, self.readouts, strict=True)
        ):
            hu = interaction.up(h)
            total = None
            for start, stop in bounds:
                vec, index = take_edges(edge_vec, edge_index, start, stop, paired)
                part = checkpoint(self._chunk_sum, hu, vec, index, species, t, offsets[t],
                                  offsets[t + 1], paired, use_reentrant=False)
                total = part if total is None else total + part
            h = self._add_update(t, h, product(interaction.finish(total), species), species)
            node_energy = node_energy + readout(h[0]).squeeze(-1)
        vectors = h[1:4] if self.l_max >= 1 else None
        return node_energy, h[0], vectors

    def _chunk_sum(self, hu: torch.Tensor, vec: torch.Tensor, index: torch.Tensor,
                   species: torch.Tensor, layer: int, start: int, stop: int,
                   paired: bool) -> torch.Tensor:
        """Raw neighbour sum of interaction ``layer`` over one chunk of edges; its radial
        weights are outputs ``start:stop`` of the shared radial network."""
        length = torch.linalg.vector_norm(vec, dim=-1)
        unit, _ = edge_tensors(vec / length.unsqueeze(-1), min(self.l_max, 1))
        length = self.radial_length(length, species, index)
        if paired:
            length = length[: length.shape[0] // 2]
        weights = self.radial.output_slice(self.basis(length), self.envelope(length), start,
                                           stop)
        return self.interactions[layer].aggregate(hu, unit, weights, index, paired)
