"""Shared output logic of molsym models: species lookup, energy/forces/stress/dipole/scalars.

A subclass implements :meth:`AtomisticModel.representation` (per-atom energies and features
from species and edge vectors); :meth:`AtomisticModel.forward` turns them into every output.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from ase.data import chemical_symbols
from torch import nn

from molsym import keys
from molsym.errors import ConfigError, InputError
from molsym.nn.pairs import default_pairing, with_reverse_edges
from molsym.nn.radial import DistanceFloor
from molsym.nn.readout import ScalarMLP, VectorReadout
from molsym.nn.repulsion import ZBLRepulsion
from molsym.nn.scatter import scatter_sum

#: Outputs with a fixed meaning; any other name in ``outputs`` is a scalar property head.
STRUCTURAL_OUTPUTS = (keys.ENERGY, keys.FORCES, keys.STRESS, keys.DIPOLE)

#: Constructor options added after models were saved without them, with the value that
#: rebuilds those files unchanged (a file's config lacks the key: it gets this value).
SAVED_BEFORE = {"exact_isolated_atoms": False, "short_range_repulsion": False}


def weights_version(params) -> tuple:
    """A key that changes whenever one of ``params`` is replaced or updated in place (caches
    of values derived from weights: lone-atom energies, a committee's stacked weights)."""
    return tuple((p.data_ptr(), p._version) for p in params)


def saved_config(config: dict[str, Any]) -> dict[str, Any]:
    """A saved model's constructor kwargs, with :data:`SAVED_BEFORE` filling the options it
    was saved before."""
    return {**SAVED_BEFORE, **config}


def vector_norm(vectors: torch.Tensor) -> torch.Tensor:
    """|v| over the last axis with a finite gradient at v = 0 (where it is exactly 0)."""
    square = (vectors * vectors).sum(-1)
    nonzero = square > 0
    return torch.where(nonzero, torch.where(nonzero, square, 1.0).sqrt(), 0.0)


def capture_config(local_vars: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments (from ``locals()``) as a JSON-able dict: tuples become lists."""

    def clean(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        return copy.deepcopy(value)

    return {k: clean(v) for k, v in local_vars.items() if k not in ("self", "__class__")}


def _per_element(values, elements: list[int], default: float, what: str) -> list[float]:
    """Per-element numbers given as None, a list aligned with ``elements`` or {str(Z): value}."""
    if values is None:
        return [float(default)] * len(elements)
    if isinstance(values, dict):
        table = {int(k): float(v) for k, v in values.items()}
        missing = [z for z in elements if z not in table]
        if missing:
            names = [chemical_symbols[z] for z in missing]
            raise ConfigError(f"{what} has no value for element(s) {names} (Z={missing})")
        return [table[z] for z in elements]
    values = [float(v) for v in values]
    if len(values) != len(elements):
        raise ConfigError(f"{what} has {len(values)} values for {len(elements)} elements")
    return values


class AtomisticModel(nn.Module):
    """Base class: constructor kwargs are the config; forward gives the outputs in ``outputs``.

    Subclasses set ``self._config = capture_config(locals())`` first thing in ``__init__``,
    call :meth:`_setup_common`, and implement :meth:`representation`.
    """

    model_name: str = ""
    _config: dict[str, Any]
    #: Raise a readable error for atomic numbers outside ``elements`` (reads tensor values in
    #: Python); off in graphs traced for export, which check in-graph instead.
    check_elements: bool = True

    def _setup_common(
        self,
        cutoff: float,
        elements: list[int],
        outputs: list[str],
        atomic_energies,
        energy_scale: float,
        property_mean: dict[str, float] | None,
        property_std: dict[str, float] | None,
        property_pooling: dict[str, str] | None,
        num_channels: int,
        readout_hidden: int,
        vector_channels: int | None,
        dipole_moment_from_vector: bool = True,
        exact_isolated_atoms: bool = False,
        short_range_repulsion: bool = False,
        repulsion_reach: float = 1.0,
        radial_floor: float = 0.0,
        closest_pairs: dict[str, float] | None = None,
    ) -> None:
        if float(cutoff) <= 0:
            raise ConfigError(f"cutoff must be positive, got {cutoff}")
        elements = [int(z) for z in elements]
        if not elements or len(set(elements)) != len(elements) or not all(
            0 < z < len(chemical_symbols) for z in elements
        ):
            raise ConfigError(f"elements must be distinct atomic numbers, got {elements}")
        outputs = list(outputs)
        if keys.ENERGY not in outputs and (keys.FORCES in outputs or keys.STRESS in outputs):
            raise ConfigError("forces and stress need 'energy' in outputs")
        self.cutoff = float(cutoff)
        self.elements = elements
        self.outputs = outputs
        self.register_buffer("r_max", torch.tensor(self.cutoff))
        self.register_buffer("atomic_numbers", torch.tensor(elements, dtype=torch.long))
        table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        table[torch.tensor(elements)] = torch.arange(len(elements))
        self.register_buffer("z_to_index", table, persistent=False)
        shifts = _per_element(atomic_energies, elements, 0.0, "atomic_energies")
        self.atomic_energy_shift = nn.Parameter(torch.tensor(shifts))
        self.atomic_energy_scale = nn.Parameter(torch.full((len(elements),), float(energy_scale)))
        # an atom without neighbours has exactly its element's shift as energy
        # (isolated_node_energy is subtracted); False: as in models saved before the option
        self.exact_isolated_atoms = bool(exact_isolated_atoms)
        # a fixed ZBL pair repulsion inside covalent distances, added to the learned energy;
        # None: no prior (models saved before the option)
        self.repulsion = (ZBLRepulsion(elements, reach=repulsion_reach)
                          if short_range_repulsion else None)
        # the radial network sees no pair closer than radial_floor x its closest training
        # distance; 0: every length as it is (models saved before the option)
        self.distance_floor = None
        if float(radial_floor or 0.0) > 0.0:
            if closest_pairs is None:
                raise ConfigError(
                    "radial_floor needs closest_pairs (the shortest distance of each element "
                    "pair in the training set, which molsym train fills in); set "
                    "radial_floor=0 to build the model without a floor")
            self.distance_floor = DistanceFloor(elements, closest_pairs, radial_floor)
        # dipole_moment (a magnitude) as |dipole vector|: zero by construction wherever the
        # molecule's symmetry forbids a dipole; False: a free scalar head (files saved before)
        self.dipole_moment_from_vector = bool(dipole_moment_from_vector)
        structural = STRUCTURAL_OUTPUTS + (
            (keys.DIPOLE_MOMENT,) if self.dipole_moment_from_vector else ()
        )
        self.property_names = [o for o in outputs if o not in structural]
        mean, std = property_mean or {}, property_std or {}
        pooling = property_pooling or {}
        for name, how in pooling.items():
            if how not in ("mean", "sum"):
                raise ConfigError(f"property_pooling[{name!r}] must be 'mean' or 'sum'")
        self.property_mean = {p: float(mean.get(p, 0.0)) for p in self.property_names}
        self.property_std = {p: float(std.get(p, 1.0)) for p in self.property_names}
        self.property_pooling = {p: pooling.get(p, "mean") for p in self.property_names}
        self.property_heads = nn.ModuleDict(
            {p: ScalarMLP(num_channels, readout_hidden) for p in self.property_names}
        )
        self._vector_dipole_moment = (
            keys.DIPOLE_MOMENT in outputs and keys.DIPOLE_MOMENT not in self.property_names
        )
        self._dipole_head = keys.DIPOLE in outputs or self._vector_dipole_moment
        if self._dipole_head:
            self.charge_head = ScalarMLP(num_channels, readout_hidden)
            self.atomic_dipole_head = (
                VectorReadout(vector_channels) if vector_channels is not None else None
            )

    def config(self) -> dict[str, Any]:
        """The constructor kwargs: ``type(model)(**model.config())`` rebuilds the model."""
        return copy.deepcopy(self._config)

    def species_index(self, z: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers (N,) to indices into ``elements``; unknown elements raise."""
        idx = self.z_to_index.index_select(0, z.clamp(0, self.z_to_index.shape[0] - 1))
        if self.check_elements and not torch.compiler.is_compiling() and bool((idx < 0).any()):
            bad = sorted({int(v) for v in z[idx < 0].tolist()})
            names = [chemical_symbols[v] if 0 < v < len(chemical_symbols) else str(v) for v in bad]
            raise InputError(
                f"element(s) {', '.join(names)} (Z={bad}) not supported by this model; "
                f"it knows {[chemical_symbols[e] for e in self.elements]}"
            )
        return idx

    def radial_length(self, length: torch.Tensor, species: torch.Tensor,
                      edge_index: torch.Tensor) -> torch.Tensor:
        """Edge lengths (E, ...) as the radial network sees them: raised to the pair's floor
        (:class:`~molsym.nn.radial.DistanceFloor`) where the model has one, else unchanged."""
        if self.distance_floor is None:
            return length
        return self.distance_floor(length, species.index_select(0, edge_index[0]),
                                   species.index_select(0, edge_index[1]))

    def radial_weights(self, length: torch.Tensor, paired: bool = False) -> torch.Tensor:
        """Per-edge weights (E, F) of the radial network from edge lengths (E,), Angstrom:
        ``radial(basis(d), envelope(d))``, zero beyond the cutoff; with ``paired`` (edges in
        paired order, :mod:`molsym.nn.pairs`) evaluated once per pair of opposite edges and
        returned once per pair, (E/2, F): the interactions broadcast them over both directions."""
        if paired:
            length = length[: length.shape[0] // 2]
        return self.radial(self.basis(length), self.envelope(length))

    def isolated_node_energy(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The representation's atomic energy (S,) of one atom of each element of ``elements``
        with no neighbours: with ``exact_isolated_atoms`` it is subtracted from every atom's,
        so that a lone atom's energy is its element's ``atomic_energy_shift`` (eV) exactly and
        a molecule pulled apart tends to the sum of its atoms' shifts."""
        species = torch.arange(len(self.elements), device=device)
        no_edges = torch.zeros(0, 3, dtype=dtype, device=device)
        no_index = torch.zeros(2, 0, dtype=torch.long, device=device)
        return self.representation(species, no_edges, no_index, False)[0]

    def isolated_energies(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """:meth:`isolated_node_energy`, kept between calls in eval mode (until a weight
        changes: a new tensor or an in-place update), so MD and prediction do not evaluate
        the lone atoms at every step; computed afresh in training and in traced graphs."""
        if self.training or torch.compiler.is_compiling():
            return self.isolated_node_energy(dtype, device)
        key = (dtype, device, weights_version(self.parameters()))
        cached = self.__dict__.get("_isolated_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self.isolated_node_energy(dtype, device))
            self.__dict__["_isolated_cache"] = cached
        return cached[1]

    def representation(
        self,
        species: torch.Tensor,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        paired: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-atom energies (N,) (before per-element scale/shift), scalar features (N, C) and
        vector features (3, N, C_v) or None, from species (N,) and edge vectors (E, 3);
        ``paired``: edge ``E/2 + k`` is the reverse of edge ``k`` (see :meth:`radial_weights`)."""
        raise NotImplementedError

    def forward(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        cell: torch.Tensor | None = None,
        cell_shifts: torch.Tensor | None = None,
        compute_forces: bool = True,
        compute_stress: bool = False,
        total_charge: torch.Tensor | None = None,
        paired_edges: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs of a batch of B graphs with N atoms and E edges.

        Args:
            z: (N,) atomic numbers. pos: (N, 3) Angstrom. edge_index: (2, E), row 0 centre i.
            batch: (N,) graph of each atom. num_graphs: B.
            cell: (B, 3, 3) lattice vectors as rows (Angstrom), cell_shifts: (E, 3) integer
                image shifts; edge vector ``pos[j] - pos[i] + cell_shifts @ cell[batch[i]]``.
            compute_forces: forces -dE/dpos (eV/Angstrom), only if "forces" is in outputs.
            compute_stress: stress (B, 3, 3) eV/Angstrom^3, (1/V) dE/d(strain); 0 where V = 0.
            total_charge: (B,) in e, the sum the atomic charges are shifted to (default 0).
            paired_edges: True: ``edge_index`` lists each pair of opposite edges once,
                (2, E/2), and the reverses are implied (periodic graphs: ``cell_shifts`` (E/2, 3)
                are the given edges' and the reverses' are their negatives); False: use
                ``edge_index`` as given; None (default): pair a symmetric edge list on the CPU
                here (eager mode only: finding the pairs reads the data, so
                compiled graphs get them from their caller, ``CompiledModel``). Same results
                either way; the radial network then runs once per pair (:mod:`molsym.nn.pairs`).

        Returns: dict with ``energy`` (B,) eV, ``forces`` (N, 3), ``stress`` (B, 3, 3),
        ``dipole`` (B, 3) e*Angstrom and ``charges`` (N,) e, and scalar properties (B,).
        """
        species = self.species_index(z)
        grad_outside = torch.is_grad_enabled()
        want_forces = compute_forces and keys.FORCES in self.outputs
        need_grad = want_forces or compute_stress
        self._check_call(need_grad, compute_stress, cell, cell_shifts, paired_edges, edge_index)
        edge_index, cell_shifts, paired_edges = self._pairing(edge_index, cell_shifts,
                                                              paired_edges)
        geometry = (species, edge_index, batch, num_graphs, cell, cell_shifts, paired_edges)
        strain = None
        if compute_stress:
            strain = torch.zeros(num_graphs, 3, 3, dtype=pos.dtype, device=pos.device)
        if need_grad and torch.compiler.is_compiling():
            energy, scalars, vectors, grads = self._energy_and_grads_traced(
                pos, strain, geometry)
        else:
            energy, scalars, vectors, grads, pos = self._energy_and_grads_eager(
                pos, strain, geometry, need_grad, grad_outside)
        out: dict[str, torch.Tensor] = {}
        if keys.ENERGY in self.outputs:
            out[keys.ENERGY] = energy
        if want_forces:
            out[keys.FORCES] = -grads[0]
        if compute_stress:
            out[keys.STRESS] = self._stress(grads[-1], cell)
        self._heads(out, scalars, vectors, pos, batch, num_graphs, total_charge)
        if not grad_outside or (need_grad and not self.training):
            # under no_grad, or in eval mode after the force gradient consumed the graph
            out = {k: v.detach() for k, v in out.items()}
        return out

    @staticmethod
    def _check_call(need_grad: bool, compute_stress: bool, cell, cell_shifts,
                    paired_edges: bool | None, edge_index: torch.Tensor) -> None:
        """Refuse the combinations of arguments :meth:`forward` cannot serve."""
        if need_grad and not torch.compiler.is_compiling() and torch.is_inference_mode_enabled():
            raise RuntimeError(
                "forces and stress are autograd derivatives and cannot be computed under "
                "torch.inference_mode(); use torch.no_grad() (Lightning: "
                "Trainer(inference_mode=False))"
            )
        if compute_stress and (cell is None or cell_shifts is None):
            raise ValueError("compute_stress=True needs cell and cell_shifts")
        if (cell_shifts is not None and not torch.compiler.is_compiling()
                and cell_shifts.shape[0] != edge_index.shape[1]):
            raise ValueError(
                f"cell_shifts has {cell_shifts.shape[0]} rows for {edge_index.shape[1]} edges "
                "(with paired_edges=True: the shifts of the edges given, one per pair)")

    @staticmethod
    def _pairing(edge_index: torch.Tensor, cell_shifts: torch.Tensor | None,
                 paired_edges: bool | None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """The edge list to use, its cell shifts and whether it is paired
        (``paired_edges=None``: pair a symmetric list here, in eager mode only; see
        :meth:`forward`)."""
        if paired_edges is not None:
            return edge_index, cell_shifts, bool(paired_edges)
        if torch.compiler.is_compiling():
            return edge_index, cell_shifts, False
        return default_pairing(edge_index, cell_shifts)

    def _energy_and_grads_traced(self, pos: torch.Tensor, strain: torch.Tensor | None,
                                 geometry: tuple):
        """Energies, features and d(sum E)/d(pos[, strain]) through ``torch.func.grad``, which
        traces into one graph under ``torch.compile`` (``autograd.grad`` breaks it)."""
        def energy_fn(p, e):
            energy, scalars, vectors = self._energy(p, e, *geometry)
            aux = (energy, scalars) if vectors is None else (energy, scalars, vectors)
            return energy.sum(), aux

        argnums = (0, 1) if strain is not None else (0,)
        grads, aux = torch.func.grad(energy_fn, argnums=argnums, has_aux=True)(pos, strain)
        vectors = aux[2] if len(aux) == 3 else None
        return aux[0], aux[1], vectors, grads

    def _energy_and_grads_eager(self, pos: torch.Tensor, strain: torch.Tensor | None,
                                geometry: tuple, need_grad: bool, grad_outside: bool):
        """Energies, features and (when ``need_grad``) d(sum E)/d(pos[, strain]) through
        ``torch.autograd.grad`` (a graph for second derivatives in training mode); also the
        positions the energy was computed from (a leaf that requires grad when needed)."""
        grads: tuple[torch.Tensor, ...] = ()
        with torch.set_grad_enabled(grad_outside or need_grad):
            if need_grad and not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            if strain is not None:
                strain.requires_grad_(True)
            energy, scalars, vectors = self._energy(pos, strain, *geometry)
            if need_grad:
                inputs = [pos] if strain is None else [pos, strain]
                grads = torch.autograd.grad([energy.sum()], inputs, create_graph=self.training)
        return energy, scalars, vectors, grads, pos

    def _energy(
        self,
        pos: torch.Tensor,
        strain: torch.Tensor | None,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        cell: torch.Tensor | None,
        cell_shifts: torch.Tensor | None,
        paired_edges: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Energies (B,) and the features of :meth:`representation`; ``strain`` (B, 3, 3) (zero,
        differentiated for the stress) deforms positions and cell symmetrically."""
        if strain is not None and cell is not None:
            sym = 0.5 * (strain + strain.transpose(1, 2))
            pos = pos + torch.einsum("ni,nij->nj", pos, sym.index_select(0, batch))
            cell = cell + torch.bmm(cell, sym)
        centre, neighbour = edge_index[0], edge_index[1]
        edge_vec = pos.index_select(0, neighbour) - pos.index_select(0, centre)
        if cell is not None and cell_shifts is not None:
            edge_cell = cell.index_select(0, batch.index_select(0, centre))
            edge_vec = edge_vec + torch.einsum("ek,ekl->el", cell_shifts, edge_cell)
        if paired_edges:  # one edge per pair given: add the reverses (paired order)
            edge_vec = torch.cat([edge_vec, -edge_vec], dim=0)
            edge_index = with_reverse_edges(edge_index)
        node_energy, scalars, vectors = self.representation(
            species, edge_vec, edge_index, paired_edges
        )
        if self.exact_isolated_atoms:
            isolated = self.isolated_energies(edge_vec.dtype, edge_vec.device)
            node_energy = node_energy - isolated.index_select(0, species)
        node_energy = (
            node_energy * self.atomic_energy_scale.index_select(0, species)
            + self.atomic_energy_shift.index_select(0, species)
        )
        if self.repulsion is not None:
            node_energy = node_energy + self.repulsion(species, vector_norm(edge_vec), edge_index)
        return scatter_sum(node_energy, batch, num_graphs), scalars, vectors

    @staticmethod
    def _stress(d_energy_d_strain: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        volume = torch.linalg.det(cell).abs()
        safe = torch.where(volume > 0, volume, torch.ones_like(volume))
        stress = d_energy_d_strain / safe.view(-1, 1, 1)
        return torch.where((volume > 0).view(-1, 1, 1), stress, torch.zeros_like(stress))

    def _heads(self, out, scalars, vectors, pos, batch, num_graphs, total_charge) -> None:
        """Dipole (charges x positions + atomic dipoles) and pooled scalar properties."""
        pos = pos.detach() if not self.training else pos
        ones = torch.ones_like(batch, dtype=scalars.dtype)
        counts = scatter_sum(ones, batch, num_graphs)
        if self._dipole_head:
            q = self.charge_head(scalars).squeeze(-1)
            target = torch.zeros_like(counts) if total_charge is None else total_charge.view(-1)
            excess = (scatter_sum(q, batch, num_graphs) - target.to(q.dtype)) / counts
            q = q - excess.index_select(0, batch)
            dipole = scatter_sum(q.unsqueeze(-1) * pos, batch, num_graphs)
            if self.atomic_dipole_head is not None and vectors is not None:
                dipole = dipole + scatter_sum(self.atomic_dipole_head(vectors), batch, num_graphs)
            if keys.DIPOLE in self.outputs:
                out[keys.DIPOLE] = dipole
            if self._vector_dipole_moment:
                out[keys.DIPOLE_MOMENT] = vector_norm(dipole)
            out[keys.CHARGES] = q
        for name, head in self.property_heads.items():
            value = scatter_sum(head(scalars).squeeze(-1), batch, num_graphs)
            if self.property_pooling[name] == "mean":
                value = value / counts
            out[name] = value * self.property_std[name] + self.property_mean[name]
