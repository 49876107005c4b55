"""Committee members of one architecture evaluated together, in one batched pass.

:class:`StackedEquivariant` runs M :class:`~molsym.models.EquivariantModel` members that share
their architecture (the config up to the per-member numbers in :data:`PER_MEMBER`) as one
network: their weights stacked along a member axis M (one tensor per weight, cached until a
weight changes), features (K, N, M, C) with the member axis just before the channels, so the
edge and product algebra of :class:`~molsym.nn.CartesianInteraction` and
:func:`~molsym.nn.cartesian.product_terms` runs once for all members, and each weight product
is one batched matrix product over members. Each op then runs once instead of M times:
on a CPU, where a small molecule's evaluation is mostly per-op overhead, that is the saving
(docs/benchmarks.md, Committee cost).

Neighbour pairs, edge vectors, lengths, unit vectors, the Bessel basis and the envelope are
computed once per call, for M copies of the positions (N, M, 3): member m's energy depends
only on copy m, so one gradient of the summed energies gives every member's own forces.
The outputs equal those of the members run one by one to rounding. Graphs past
:data:`STACK_MAX_EDGE_FEATURES` go to the members one by one (faster there). Weights are taken as
constants (no gradient to them): :class:`~molsym.models.EnsembleModel` uses this in eval mode
only, and runs its members one by one for training, stress, compiled graphs and graphs large
enough for edge chunks.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from molsym import keys
from molsym.models.base import vector_norm, weights_version
from molsym.models.equivariant import EquivariantModel
from molsym.nn.cartesian import product_terms, weigh_terms
from molsym.nn.pairs import with_reverse_edges
from molsym.nn.scatter import scatter_sum

#: Largest graph evaluated in one pass, in edges x members x channels. On one CPU thread the
#: pass is cheaper than the members one by one while per-op overhead dominates, and dearer
#: once its M-times larger edge tensors dominate: for K = 4 default flagships (32 channels)
#: on aspirin frames, 3.1x one member against 4.1x for the loop at 598 edges, 3.8x against
#: 3.6x at 888 (docs/benchmarks.md, Committee cost). Not measured on a GPU.
STACK_MAX_EDGE_FEATURES = 3 * 2**15
#: Config entries that may differ between members evaluated together (weights or per-member
#: numbers); every other entry must be equal.
PER_MEMBER = ("atomic_energies", "energy_scale", "property_mean", "property_std")


def architecture_key(model: nn.Module) -> str | None:
    """A string equal for models :class:`StackedEquivariant` can evaluate together; None for
    a model it cannot take (another architecture)."""
    if type(model) is not EquivariantModel:
        return None
    config = {k: v for k, v in model.config().items() if k not in PER_MEMBER}
    return json.dumps(config, sort_keys=True, default=str)


def _matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """Each member's ``x @ weight (+ bias)``: x (..., M, I), weight (M, I, O), bias (M, O);
    returns (..., M, O)."""
    lead, (m, i) = x.shape[:-2], x.shape[-2:]
    rows = x.reshape(-1, m, i).transpose(0, 1)  # (M, R, I)
    out = torch.bmm(rows, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), rows,
                                                                     weight)
    return out.transpose(0, 1).reshape(*lead, m, weight.shape[-1])


def _linear(x: torch.Tensor, w: dict[str, torch.Tensor], name: str, bias: bool = True):
    """Each member's ``nn.Linear`` ``name`` (stacked weight (M, O, I), bias (M, O))."""
    return _matmul(x, w[f"{name}.weight"].transpose(1, 2), w[f"{name}.bias"] if bias else None)


def _scalar_mlp(x: torch.Tensor, w: dict[str, torch.Tensor], name: str, bias: bool = True):
    """Each member's :class:`~molsym.nn.ScalarMLP` ``name``: (..., M, C) -> (..., M, out)."""
    hidden = nn.functional.silu(_linear(x, w, f"{name}.net.0"))
    return _linear(hidden, w, f"{name}.net.2", bias)


def _equivariant_linear(h: torch.Tensor, weight: torch.Tensor, component_l: torch.Tensor):
    """Each member's :class:`~molsym.nn.cartesian.EquivariantLinear`: h (K, N, M, I),
    stacked weight (M, L + 1, I, O); returns (K, N, M, O)."""
    per_component = weight[:, component_l[: h.shape[0]]].transpose(0, 1)  # (K, M, I, O)
    return torch.matmul(h.permute(0, 2, 1, 3), per_component).permute(0, 2, 1, 3).contiguous()


class StackedEquivariant:
    """M members of one architecture (:func:`architecture_key`) evaluated together.

    Holds the members, not copies: the stacked weights are rebuilt whenever one of theirs
    changes (a new tensor or an in-place update).
    """

    def __init__(self, members: list[EquivariantModel]):
        keys_ = {architecture_key(m) for m in members}
        if len(keys_) != 1 or None in keys_:
            raise ValueError("StackedEquivariant needs members of one EquivariantModel "
                             "architecture")
        self.members = members
        self._cache: tuple[tuple, dict[str, torch.Tensor]] | None = None

    def weights(self) -> dict[str, torch.Tensor]:
        """The members' parameters stacked, {name: (M, *shape)}, detached."""
        params = [list(m.named_parameters()) for m in self.members]
        version = weights_version(p for ps in params for _, p in ps)
        if self._cache is None or self._cache[0] != version:
            with torch.no_grad():
                stacked = {name: torch.stack([dict(ps)[name] for ps in params])
                           for name, _ in params[0]}
            self._cache = (version, stacked)
        return self._cache[1]

    def can_run(self, num_edges: int, max_edge_features: int) -> bool:
        """Whether a graph of ``num_edges`` edges runs here: not in edge chunks, and at most
        ``max_edge_features`` edges x members x channels (see :data:`STACK_MAX_EDGE_FEATURES`)."""
        channels = self.members[0].embedding.embedding_dim
        return (num_edges * len(self.members) * channels <= max_edge_features
                and not any(m.chunks_edges(num_edges) for m in self.members))

    def __call__(self, z, pos, edge_index, batch, num_graphs, cell=None, cell_shifts=None,
                 compute_forces: bool = True, total_charge=None,
                 paired_edges: bool = False) -> dict[str, torch.Tensor]:
        """The members' outputs stacked, {name: (M, ...)}, for the arguments of
        :meth:`AtomisticModel.forward` (without stress)."""
        first = self.members[0]
        species = first.species_index(z)
        want_forces = compute_forces and keys.FORCES in first.outputs
        first._check_call(want_forces, False, cell, cell_shifts, paired_edges, edge_index)
        w = self.weights()
        count = len(self.members)
        with torch.set_grad_enabled(want_forces):
            # one copy of the positions per member (N, M, 3): d(sum of energies)/d(copy m)
            # is member m's own gradient
            copies = pos.detach().unsqueeze(1).expand(-1, count, -1).clone()
            copies.requires_grad_(want_forces)
            edge_vec = copies.index_select(0, edge_index[1]) - copies.index_select(0, edge_index[0])
            if cell is not None and cell_shifts is not None:
                edge_cell = cell.index_select(0, batch.index_select(0, edge_index[0]))
                edge_vec = edge_vec + torch.einsum("ek,ekl->el", cell_shifts,
                                                   edge_cell).unsqueeze(1)
            if paired_edges:
                edge_vec = torch.cat([edge_vec, -edge_vec], dim=0)
                edge_index = with_reverse_edges(edge_index)
            scalars, vectors, node_energy = self._representation(
                w, species, edge_vec, edge_index, paired_edges)
            if first.exact_isolated_atoms:  # as AtomisticModel._energy, member by member
                isolated = torch.stack([m.isolated_energies(edge_vec.dtype, edge_vec.device)
                                        for m in self.members], dim=1)  # (S, M)
                node_energy = node_energy - isolated.index_select(0, species)
            scale = w["atomic_energy_scale"].index_select(1, species).transpose(0, 1)
            shift = w["atomic_energy_shift"].index_select(1, species).transpose(0, 1)
            node_energy = node_energy * scale + shift
            if first.repulsion is not None:  # the same fixed prior for every member
                node_energy = node_energy + first.repulsion(
                    species, vector_norm(edge_vec), edge_index)
            energy = scatter_sum(node_energy, batch, num_graphs)  # (B, M)
            out = {keys.ENERGY: energy.transpose(0, 1)} if keys.ENERGY in first.outputs else {}
            if want_forces:
                (grad,) = torch.autograd.grad([energy.sum()], [copies])
                out[keys.FORCES] = -grad.transpose(0, 1)  # (M, N, 3)
        self._heads(out, w, scalars, vectors, pos.detach(), batch, num_graphs, total_charge)
        return {k: v.detach() for k, v in out.items()}

    def _representation(self, w, species, edge_vec, edge_index, paired):
        """:meth:`EquivariantModel.representation` of every member: scalar features
        (N, M, C), vector features (3, N, M, C) or None, atomic energies (N, M)."""
        first = self.members[0]
        length = torch.linalg.vector_norm(edge_vec, dim=-1)  # (E, M)
        unit = None
        if first.l_max >= 1:
            unit = (edge_vec / length.unsqueeze(-1)).permute(2, 0, 1)  # (3, E, M)
        length = first.radial_length(length, species, edge_index)
        if paired:
            length = length[: length.shape[0] // 2]
        # trained Bessel frequencies are each member's own, (M, R): the basis of each copy
        basis = first.basis(length, w.get("basis.freqs"))
        hidden = nn.functional.silu(_linear(basis, w, "radial.lin1"))
        for k in range(len(first.radial.hidden)):
            hidden = nn.functional.silu(_linear(hidden, w, f"radial.hidden.{k}"))
        radial = _linear(hidden, w, "radial.lin2", bias=False) * first.envelope(length)[..., None]
        h = w["embedding.weight"].index_select(1, species).transpose(0, 1).unsqueeze(0)
        node_energy = torch.zeros(species.shape[0], len(self.members), dtype=h.dtype,
                                  device=h.device)
        last = len(first.interactions) - 1
        for t, (interaction, radial_t) in enumerate(zip(
            first.interactions, radial.split(first.weight_sizes, dim=-1), strict=True
        )):
            # (E/D, M, P*C) -> (E/D, P, M, C): the layout CartesianInteraction.aggregate takes
            radial_t = radial_t.unflatten(-1, (interaction.num_paths, -1))
            radial_t = radial_t.transpose(1, 2).contiguous()
            hu = _equivariant_linear(h, w[f"interactions.{t}.up.weight"],
                                     interaction.up.component_l)
            a = interaction.finish(interaction.aggregate(hu, unit, radial_t, edge_index, paired))
            update = self._product(w, t, a, species)
            if first.species_mixing is not None:
                update = self._species_mixing(w, t, update, species)
            if h.shape[0] < update.shape[0]:  # first layer: scalars only so far
                h = nn.functional.pad(h, (0, 0, 0, 0, 0, 0, 0, update.shape[0] - h.shape[0]))
            h = h + update
            if t < last:
                readout = _linear(h[0], w, f"readouts.{t}", bias=False)
            else:
                readout = _scalar_mlp(h[0], w, f"readouts.{t}", bias=False)
            node_energy = node_energy + readout.squeeze(-1)
        vectors = h[1:4] if first.l_max >= 1 else None
        return h[0], vectors, node_energy

    def _product(self, w, t: int, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Each member's :class:`~molsym.nn.cartesian.ProductBlock` ``t`` on (K, N, M, C)."""
        block = self.members[0].products[t]
        name = f"products.{t}"
        x = _equivariant_linear(a, w[f"{name}.mix.weight"], block.mix.component_l)
        a_full, b_full = x.unflatten(-1, (2, -1)).unbind(-2)
        terms = product_terms(a_full, b_full, block.l_max, block.more_scalars)
        if block.element_weights is not None:  # (M, Z, T, C) -> per atom (N, M, T, C)
            gain = w[f"{name}.element_weights"].index_select(1, species).transpose(0, 1)
            terms = weigh_terms(terms, block.num_terms, gain)
        scalars, vectors, tensors = terms
        parts = [_linear(scalars, w, f"{name}.out_scalar").unsqueeze(0)]
        if vectors is not None:
            parts.append(_matmul(vectors, w[f"{name}.out_vector"]))
        if tensors is not None:
            parts.append(_matmul(tensors, w[f"{name}.out_tensor"]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    @staticmethod
    def _species_mixing(w, t: int, h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Each member's :class:`~molsym.nn.cartesian.SpeciesLinear` ``t`` on (K, N, M, C)."""
        weight = w[f"species_mixing.{t}.weight"]  # (M, L + 1, Z, C, C)
        sizes = [1, 3, 9][: {1: 1, 4: 2, 13: 3}[h.shape[0]]]
        mixed = [torch.einsum("knmc,mncd->knmd", part,
                              weight[:, rank].index_select(1, species))
                 for rank, part in enumerate(h.split(sizes, dim=0))]
        return h + (mixed[0] if len(mixed) == 1 else torch.cat(mixed, dim=0))

    def _heads(self, out, w, scalars, vectors, pos, batch, num_graphs, total_charge) -> None:
        """:meth:`AtomisticModel._heads` of every member, outputs stacked (M, ...)."""
        first = self.members[0]
        counts = scatter_sum(torch.ones_like(batch, dtype=scalars.dtype), batch, num_graphs)
        counts = counts.unsqueeze(-1)  # (B, 1)
        if first._dipole_head:
            q = _scalar_mlp(scalars, w, "charge_head").squeeze(-1)  # (N, M)
            target = torch.zeros_like(counts) if total_charge is None else total_charge.view(-1, 1)
            excess = (scatter_sum(q, batch, num_graphs) - target.to(q.dtype)) / counts
            q = q - excess.index_select(0, batch)
            dipole = scatter_sum(q.unsqueeze(-1) * pos.unsqueeze(1), batch, num_graphs)
            if first.atomic_dipole_head is not None and vectors is not None:
                atomic = torch.einsum("anmc,mc->nma", vectors, w["atomic_dipole_head.weight"])
                dipole = dipole + scatter_sum(atomic, batch, num_graphs)  # (B, M, 3)
            if keys.DIPOLE in first.outputs:
                out[keys.DIPOLE] = dipole.transpose(0, 1)
            if first._vector_dipole_moment:
                out[keys.DIPOLE_MOMENT] = vector_norm(dipole).transpose(0, 1)
            out[keys.CHARGES] = q.transpose(0, 1)
        for name in first.property_names:
            value = scatter_sum(_scalar_mlp(scalars, w, f"property_heads.{name}").squeeze(-1),
                                batch, num_graphs)
            if first.property_pooling[name] == "mean":
                value = value / counts
            std = value.new_tensor([m.property_std[name] for m in self.members])
            mean = value.new_tensor([m.property_mean[name] for m in self.members])
            out[name] = (value * std + mean).transpose(0, 1)
