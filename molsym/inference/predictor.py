"""Batched prediction with a trained model: molecules in, one table row per molecule out.

The :class:`Predictor` takes :class:`Entry` objects (one per input molecule or frame, possibly
already failed while reading), checks that the model covers their elements, builds graphs with
:func:`molsym.data.graph.atoms_to_graph`, packs them into batches of at most ``batch_atoms``
atoms and calls the model. Every entry gets a row; a failure is confined to its own row.

Columns: ``id, input, index, name, smiles, formula, n_atoms``, one ``<property>_<unit>`` column
per predicted per-molecule property (``energy_eV``, ``homo_eV``, ``dipole_D`` = magnitude in
Debye, ...), ``warning`` (caveats of a row that was predicted: fragments embedded apart,
inputs outside what the model was trained on; see :mod:`molsym.inference.extrapolation`)
and ``error`` (empty when the prediction worked). Forces are never columns; ask for them
with ``forces=True`` and read :attr:`Entry.forces` (eV/Angstrom).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ase
import numpy as np
import pandas as pd
import torch

from molsym import keys, units
from molsym.data.graph import atoms_to_graph
from molsym.data.readers.smiles import DEFAULT_EMBED_TIMEOUT, DEFAULT_MAX_HEAVY_ATOMS
from molsym.elements import not_covered
from molsym.errors import ConfigError, InputError
from molsym.inference.extrapolation import (
    close_pairs_warning,
    composition_warning,
    energy_reference,
    extrapolation_warnings,
    model_metadata,
    radial_floors,
    trained_on_periodic,
)
from molsym.inference.inputs import (
    Entry,
    bare_atoms,
    embed_smiles,
    merge_in_order,
    molecules_to_entries,
)
from molsym.inference.model import model_facts, prepare_model
from molsym.memory import MemoryLimitError, apply_memory_limit, check_fits, estimated_edges
from molsym.models.ensemble import std_key
from molsym.pretrained import smiles_model_path

__all__ = ["Entry", "Predictor", "embed_smiles", "merge_in_order", "molecules_to_entries",
           "predict", "property_column"]

#: Default upper bound on the number of atoms in one batch.
DEFAULT_BATCH_ATOMS = 4096

#: Column unit and factor (value in column = internal value / factor): :mod:`molsym.units`.
PROPERTY_UNITS = units.COLUMN_UNITS
#: Magnitudes that a scalar regression head may push below zero; clipped at 0.
NONNEGATIVE = frozenset({"dipole_moment"})
#: Properties that share one column name: QM9's scalar dipole magnitude is ``dipole_D`` too
#: (unless the model also predicts the dipole vector).
_ALIASES = {"dipole_moment": "dipole"}
#: Model outputs that are per atom or tensors and never become table columns.
NON_COLUMN_OUTPUTS = frozenset({keys.FORCES, keys.STRESS, keys.CHARGES})
BASE_COLUMNS = ["id", "input", "index", "name", "smiles", "formula", "n_atoms"]


#: Column of a committee's largest per-atom force spread (RMS deviation of the members'
#: force vectors from their mean), eV/Angstrom.
MAX_FORCE_SPREAD = "forces_std_max_eV_per_Angstrom"


def spread_column(name: str, outputs: Sequence[str] = ()) -> str:
    """Column of a committee's spread of property ``name``: ``<name>_std_<unit>``."""
    column, unit = property_column(name, outputs), PROPERTY_UNITS.get(name, (None, 1.0))[0]
    return f"{column[: -len(unit) - 1]}_std_{unit}" if unit else f"{column}_std"


def property_column(name: str, outputs: Sequence[str] = ()) -> str:
    """Column name of a predicted property: ``<name>_<unit>`` (``energy_eV``, ``dipole_D``).

    ``dipole_moment`` (a scalar magnitude) is ``dipole_D`` unless ``outputs`` also has
    ``dipole``; a property of unknown unit keeps its bare name.
    """
    unit = PROPERTY_UNITS.get(name, (None, 1.0))[0]
    alias = _ALIASES.get(name)
    if alias is not None and alias not in outputs:
        name = alias
    return f"{name}_{unit}" if unit else name


def atom_batches(sizes: Sequence[int], batch_atoms: int) -> Iterator[list[int]]:
    """Consecutive groups of indices whose sizes sum to at most ``batch_atoms`` (a structure
    larger than ``batch_atoms`` is a batch of its own)."""
    group: list[int] = []
    total = 0
    for i, n in enumerate(sizes):
        if group and total + n > batch_atoms:
            yield group
            group, total = [], 0
        group.append(i)
        total += n
    if group:
        yield group


class Predictor:
    """Runs a model on many structures in batches of at most ``batch_atoms`` atoms.

    A pretrained name with a SMILES-native model (``"qm9"``) predicts the entries whose
    geometry was embedded from a SMILES (:attr:`Entry.embedded`) with that model (trained on
    the same RDKit geometries) and structures given with coordinates with the main one.

    Args:
        model: a molsym model, a deploy file path or a pretrained name (e.g. ``"qm9"``).
        device: ``"cpu"``, ``"cuda"`` or a torch device.
        dtype: ``"float32"``/``"float64"``; None keeps the model's own dtype.
        batch_atoms: upper bound on the total number of atoms in one batch.
        compile: run the model through ``torch.compile`` (see :func:`compile_model`):
            ``"auto"`` (default) for batches of :data:`~molsym.models.compiled.
            AUTO_COMPILE_EDGES` edges and more (large structures), True for every batch, False
            never. The first compiled batch compiles (tens of seconds on a CPU), later ones
            run faster; results equal the eager ones to rounding.
        memory_limit: memory one structure may use (bytes or e.g. ``"16GB"``; default: the
            ``MOLSYM_MEMORY_LIMIT`` variable, else what the system has available). A structure
            estimated to need more gets an error row saying how many atoms fit
            (:mod:`molsym.memory`) and is not run.
    """

    def __init__(self, model: Any, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None,
                 batch_atoms: int = DEFAULT_BATCH_ATOMS, compile: bool | str = "auto",
                 memory_limit: int | str | None = None) -> None:
        if batch_atoms < 1:
            raise ConfigError(f"batch_atoms must be >= 1, got {batch_atoms}")
        module, self.model, self._forward, self.device, self.dtype = prepare_model(
            model, device, dtype, compile)
        self.compiled = compile
        self.cutoff, self.elements, self.outputs = model_facts(module)
        #: a committee (EnsembleModel): its spread gets columns too
        self.committee = hasattr(module, "members")
        #: the model's radial floors: rows with atoms closer than them get a warning
        self.floors = radial_floors(module)
        self.batch_atoms = int(batch_atoms)
        self.memory_limit = memory_limit
        apply_memory_limit(self.model, memory_limit)
        metadata = model_metadata(model)
        self.periodic_training = trained_on_periodic(model, metadata)
        #: the deploy file's ``energy_reference`` (None: a model object, an older file or a
        #: model without energy): rows of compositions it does not determine get a warning
        self.energy_reference = (energy_reference(model, metadata)
                                 if keys.ENERGY in self.outputs else None)
        self.for_smiles: Predictor | None = None
        smiles_path = smiles_model_path(model) if isinstance(model, str) else None
        if smiles_path is not None:
            self.for_smiles = Predictor(smiles_path, device, dtype, batch_atoms, compile,
                                        memory_limit)
            if self.for_smiles.outputs != self.outputs:
                raise ConfigError(f"pretrained {model!r}: its SMILES model predicts "
                                  f"{self.for_smiles.outputs}, the main one {self.outputs}")

    @property
    def properties(self) -> list[str]:
        """Per-molecule outputs of the model that become table columns, in model order."""
        return [p for p in self.outputs if p not in NON_COLUMN_OUTPUTS]

    @property
    def columns(self) -> list[str]:
        """All table columns, in order."""
        props = [property_column(p, self.outputs) for p in self.properties]
        return BASE_COLUMNS + props + self.spread_columns + ["warning", "error"]

    @property
    def spread_columns(self) -> list[str]:
        """A committee's spread: ``<property>_std_<unit>`` per property and the largest
        per-atom force spread; none for a single model."""
        if not self.committee:
            return []
        cols = [spread_column(p, self.outputs) for p in self.properties]
        return cols + ([MAX_FORCE_SPREAD] if keys.FORCES in self.outputs else [])

    def run(self, entries: Sequence[Entry], forces: bool = False,
            progress: Callable[[int], None] | None = None) -> list[Entry]:
        """Predict every entry that has a structure; fill ``values``/``forces`` or ``error``.

        ``progress(n)`` is called with the number of entries finished after each batch.
        """
        if self.for_smiles is not None:
            self.for_smiles.run([e for e in entries if e.embedded], forces, progress)
            entries_here = [e for e in entries if not e.embedded]
            self._run_here(entries_here, forces, progress)
            return list(entries)
        self._run_here(entries, forces, progress)
        return list(entries)

    def _run_here(self, entries: Sequence[Entry], forces: bool,
                  progress: Callable[[int], None] | None) -> None:
        # a committee's force spread is worth the gradient even when no forces file is asked for
        forces = (forces or self.committee) and keys.FORCES in self.outputs
        graphs, todo = [], []
        for entry in entries:
            if entry.atoms is None or entry.error:
                continue
            graph = self._graph(entry)
            if graph is not None:
                graphs.append(graph)
                todo.append(entry)
        if progress is not None:
            progress(len(entries) - len(todo))
        sizes = [len(e.atoms) for e in todo]
        for group in atom_batches(sizes, self.batch_atoms):
            self._run_group([todo[i] for i in group], [graphs[i] for i in group], forces)
            if progress is not None:
                progress(len(group))

    def _graph(self, entry: Entry):
        """The graph of ``entry`` (None, with ``error`` set, when there is none). A molecule
        is centred first (float64), so that float32 predictions do not depend on where it
        sits: at x = 1e6 Angstrom float32 has a resolution of 0.06 Angstrom."""
        message = not_covered(entry.atoms.numbers, self.elements)
        if not message:
            atoms = bare_atoms(entry.atoms)
            if not atoms.pbc.any():
                atoms.positions = atoms.positions - atoms.positions.mean(axis=0)
            try:
                check_fits(self.model, len(atoms), estimated_edges(atoms, self.cutoff),
                           self.dtype, self.memory_limit, estimated=True)
                graph = atoms_to_graph(atoms, self.cutoff, dtype=self.dtype)
                check_fits(self.model, len(atoms), int(graph[keys.EDGE_INDEX].shape[1]),
                           self.dtype, self.memory_limit)
            except InputError as err:
                message = err.reason
            except MemoryLimitError as err:
                message = str(err)
            else:
                entry.warnings += extrapolation_warnings(
                    atoms, graph[keys.EDGE_INDEX].numpy(), self.cutoff, self.periodic_training)
                reference = composition_warning(atoms.numbers, self.energy_reference)
                close = close_pairs_warning(graph, self.floors)
                entry.warnings += [w for w in (reference, close) if w]
                return graph
        entry.error = message
        return None

    def _run_group(self, group: list[Entry], graphs: list, forces: bool) -> None:
        try:
            self._predict(group, graphs, forces)
        except (RuntimeError, ValueError) as err:  # a failed batch: retry one by one
            if len(group) == 1:
                group[0].error = f"prediction failed: {err}"
                return
            for entry, graph in zip(group, graphs, strict=True):
                self._run_group([entry], [graph], forces)

    def _predict(self, group: list[Entry], graphs: list, forces: bool) -> None:
        from torch_geometric.data import Batch

        from molsym.models import predict_batch

        batch = Batch.from_data_list(graphs).to(self.device)
        with torch.set_grad_enabled(forces):
            out = predict_batch(self._forward, batch, compute_forces=forces,
                                compute_stress=False)
        values = {}
        for prop in self.properties:
            tensor = out[prop].detach()
            if tensor.dim() == 2:  # vector property (dipole): magnitude
                tensor = tensor.norm(dim=-1)
            elif prop in NONNEGATIVE:
                tensor = tensor.clamp(min=0.0)
            factor = PROPERTY_UNITS.get(prop, (None, 1.0))[1]
            column = property_column(prop, self.outputs)
            values[column] = (tensor.double().cpu().numpy() / factor).tolist()
            if self.committee:
                spread = out[std_key(prop)].detach().double().cpu().numpy() / factor
                values[spread_column(prop, self.outputs)] = spread.tolist()
        if self.committee and forces:
            per_atom = out[std_key(keys.FORCES)].detach().double().cpu().numpy()
            bounds = np.cumsum([0] + [len(e.atoms) for e in group])
            values[MAX_FORCE_SPREAD] = [float(per_atom[a:b].max()) if b > a else 0.0
                                        for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        f_all = out[keys.FORCES].detach().double().cpu().numpy() if forces else None
        start = 0
        for k, entry in enumerate(group):
            entry.values = {col: vals[k] for col, vals in values.items()}
            if f_all is not None:
                entry.forces = f_all[start:start + len(entry.atoms)]
            start += len(entry.atoms)
            bad = [c for c, v in entry.values.items() if not np.isfinite(v)]
            if bad:
                entry.error = f"non-finite prediction for {', '.join(bad)}"

    def table(self, entries: Sequence[Entry]) -> pd.DataFrame:
        """One row per entry, in order, with :attr:`columns`."""
        rows = []
        for e in entries:
            row: dict[str, Any] = {
                "id": e.id,
                "input": e.input,
                "index": e.index if e.index is not None else pd.NA,
                "name": e.name,
                "smiles": e.smiles,
                "formula": e.atoms.get_chemical_formula() if e.atoms is not None else "",
                "n_atoms": len(e.atoms) if e.atoms is not None else pd.NA,
            }
            for col in [property_column(p, self.outputs) for p in self.properties] + \
                    self.spread_columns:
                row[col] = e.values.get(col, np.nan) if not e.error else np.nan
            row["warning"] = "; ".join(e.warnings)
            row["error"] = e.error
            rows.append(row)
        df = pd.DataFrame(rows, columns=self.columns)
        df["index"] = df["index"].astype("Int64")
        df["n_atoms"] = df["n_atoms"].astype("Int64")
        return df


def predict(model: Any, molecules: Sequence[str | ase.Atoms], *, device: str = "cpu",
            dtype: str | None = None, batch_atoms: int = DEFAULT_BATCH_ATOMS,
            n_jobs: int = 1, compile: bool | str = "auto", fragments: str = "separate",
            max_heavy_atoms: int = DEFAULT_MAX_HEAVY_ATOMS,
            embed_timeout: float | None = DEFAULT_EMBED_TIMEOUT) -> pd.DataFrame:
    """Predict the properties of SMILES strings and/or ``ase.Atoms`` (one row each, in order).

    SMILES are embedded in 3D by molsym's SMILES reader (RDKit). Returns the table described
    in this module's docstring; failed molecules have an ``error`` and NaN properties.
    ``compile=True`` runs the model through ``torch.compile`` (worth it for many molecules;
    the default ``"auto"`` compiles for large structures only, see :class:`Predictor`).
    ``fragments`` (``"separate"``: embedded apart, ``"largest"``: only the largest kept),
    ``max_heavy_atoms`` and ``embed_timeout`` (seconds per SMILES, None: no limit): see
    :func:`molsym.data.readers.smiles.embed_records`.
    """
    predictor = Predictor(model, device=device, dtype=dtype, batch_atoms=batch_atoms,
                          compile=compile)
    embed = {"fragments": fragments, "max_heavy_atoms": max_heavy_atoms,
             "embed_timeout": embed_timeout}
    entries = predictor.run(molecules_to_entries(list(molecules), n_jobs=n_jobs, **embed))
    return predictor.table(entries)
