"""Batched prediction with a trained model: molecules in, one table row per molecule out.

The :class:`Predictor` takes :class:`Entry` objects (one per input molecule or frame, possibly
already failed while reading), checks that the model covers their elements, builds graphs with
:func:`molsym.data.graph.atoms_to_graph`, packs them into batches of at most ``batch_atoms``
atoms and calls the model. Every entry gets a row; a failure is confined to its own row.

Columns: ``id, input, index, smiles, formula, n_atoms``, one ``<property>_<unit>`` column per
predicted per-molecule property (``energy_eV``, ``homo_eV``, ``dipole_D`` = magnitude in Debye,
...), and ``error`` (empty when the prediction worked). Forces are never columns; ask for them
with ``forces=True`` and read :attr:`Entry.forces` (eV/Angstrom).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase
import numpy as np
import pandas as pd
import torch
from ase.data import chemical_symbols

from molsym import keys, units
from molsym.data.graph import atoms_to_graph
from molsym.errors import ConfigError, InputError
from molsym.models.compiled import compile_model

#: Default upper bound on the number of atoms in one batch.
DEFAULT_BATCH_ATOMS = 4096

#: Column unit and factor (value in column = internal value / factor) of known properties.
PROPERTY_UNITS: dict[str, tuple[str, float]] = {
    "energy": ("eV", units.EV),
    "homo": ("eV", units.EV),
    "lumo": ("eV", units.EV),
    "gap": ("eV", units.EV),
    "zpve": ("eV", units.EV),
    "dipole": ("D", units.DEBYE),  # magnitude of the dipole vector
    "dipole_moment": ("D", units.DEBYE),  # QM9's scalar dipole magnitude
    "u0": ("eV", units.EV),
    "u": ("eV", units.EV),
    "h": ("eV", units.EV),
    "g": ("eV", units.EV),
    "alpha": ("Angstrom3", 1.0),
    "polarizability": ("Angstrom3", 1.0),
    "r2": ("Angstrom2", 1.0),
    "cv": ("cal_mol_K", 1.0),
    "A": ("GHz", 1.0),
    "B": ("GHz", 1.0),
    "C": ("GHz", 1.0),
}
#: Magnitudes that a scalar regression head may push below zero; clipped at 0.
NONNEGATIVE = frozenset({"dipole_moment"})
#: Properties that share one column name: QM9's scalar dipole magnitude is ``dipole_D`` too
#: (unless the model also predicts the dipole vector).
_ALIASES = {"dipole_moment": "dipole"}
#: Model outputs that are per atom or tensors and never become table columns.
NON_COLUMN_OUTPUTS = frozenset({keys.FORCES, keys.STRESS, keys.CHARGES})
BASE_COLUMNS = ["id", "input", "index", "smiles", "formula", "n_atoms"]


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


@dataclass
class Entry:
    """One input molecule/frame and, after prediction, its results.

    ``atoms`` is None when reading it failed (then ``error`` says why). ``values`` maps column
    names to numbers; ``forces`` is (N, 3) eV/Angstrom when forces were asked for.
    """

    input: str
    index: int | None
    atoms: ase.Atoms | None = None
    smiles: str = ""
    id: str = ""
    error: str = ""
    values: dict[str, float] = field(default_factory=dict)
    forces: np.ndarray | None = None

    @classmethod
    def from_atoms(cls, atoms: ase.Atoms, source: str = "api", index: int | None = None) -> Entry:
        """Wrap a structure; ``source``/``index`` default to ``atoms.info`` when it has them."""
        src = str(atoms.info.get("source", source))
        idx = atoms.info.get("record", index)
        ident = str(atoms.info.get(keys.ID, f"{src}:{idx}"))
        return cls(src, idx, atoms, str(atoms.info.get("smiles", "") or ""), ident)

    @classmethod
    def from_error(cls, err: Exception, source: str, index: int | None = None) -> Entry:
        """A failed record: ``err`` (an :class:`InputError` names its source and record)."""
        src = str(getattr(err, "source", None) or source)
        rec = getattr(err, "record", None)
        idx = rec if rec is not None else index
        reason = getattr(err, "reason", None) or str(err)
        smiles = str(getattr(err, "smiles", "") or "")
        return cls(src, idx, None, smiles, f"{src}:{idx}" if idx is not None else src, reason)


def merge_in_order(atoms_list: Sequence[ase.Atoms], errors: Sequence[Exception],
                   source: str) -> list[Entry]:
    """Entries of one input (read with ``on_error="skip"``) in record order, failures included."""
    entries = [Entry.from_atoms(a, source) for a in atoms_list]
    entries += [Entry.from_error(e, source) for e in errors]

    def order(e: Entry) -> tuple[int, float]:
        return (0, float(e.index)) if isinstance(e.index, (int, np.integer)) else (1, 0.0)

    return sorted(entries, key=order)  # stable: structures of one record keep their order


def load_model_any(model: Any) -> torch.nn.Module:
    """A model object as is; a deploy-file path or a pretrained name through ``load_model``."""
    if isinstance(model, torch.nn.Module):
        return model
    if isinstance(model, (str, Path)):
        from molsym.deploy import load_model
        from molsym.pretrained import resolve_model_path

        return load_model(resolve_model_path(model))
    raise TypeError(f"model must be a torch.nn.Module, a model file or a pretrained name, "
                    f"not {type(model).__name__}")


def element_error(atoms: ase.Atoms, elements: Iterable[int]) -> str:
    """Message naming the elements of ``atoms`` the model was not trained on ('' if none)."""
    allowed = set(int(z) for z in elements)
    missing = sorted(set(int(z) for z in atoms.numbers) - allowed)
    if not missing:
        return ""
    names = ", ".join(chemical_symbols[z] for z in missing)
    known = ", ".join(chemical_symbols[z] for z in sorted(allowed))
    return f"element(s) {names} not covered by the model (trained on {known})"


def bare_atoms(atoms: ase.Atoms) -> ase.Atoms:
    """Structure only (numbers, positions, cell, pbc) plus ``info["total_charge"]`` (e, 0 when
    not given): labels of the input never reach the model, and every graph has the same fields
    so that a batch can mix inputs."""
    bare = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                     pbc=atoms.pbc)
    bare.info[keys.TOTAL_CHARGE] = float(atoms.info.get(keys.TOTAL_CHARGE, 0.0))
    return bare


def inference_copy(module: torch.nn.Module, device: torch.device,
                   dtype: torch.dtype) -> torch.nn.Module:
    """A private eval-mode copy of ``module`` on ``device`` in ``dtype``, parameter gradients
    off (forces need d/dpos only); the caller's model is left as it was."""
    model = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


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

    Args:
        model: a molsym model, a deploy file path or a pretrained name (e.g. ``"qm9"``).
        device: ``"cpu"``, ``"cuda"`` or a torch device.
        dtype: ``"float32"``/``"float64"``; None keeps the model's own dtype.
        batch_atoms: upper bound on the total number of atoms in one batch.
        compile: run the model through ``torch.compile`` (see :func:`compile_model`): the
            first batch compiles (tens of seconds on a CPU), later ones run faster; results
            equal the eager ones to rounding.
    """

    def __init__(self, model: Any, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None,
                 batch_atoms: int = DEFAULT_BATCH_ATOMS, compile: bool = False) -> None:
        if batch_atoms < 1:
            raise ConfigError(f"batch_atoms must be >= 1, got {batch_atoms}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
        module = load_model_any(model)
        self.dtype = _resolve_dtype(dtype) if dtype is not None else _model_dtype(module)
        self.model = inference_copy(module, self.device, self.dtype)
        self.compiled = bool(compile)
        self._forward = compile_model(self.model) if compile else self.model
        self.cutoff = float(module.cutoff)
        self.elements = [int(z) for z in module.elements]
        self.outputs = list(module.outputs)
        self.batch_atoms = int(batch_atoms)

    @property
    def properties(self) -> list[str]:
        """Per-molecule outputs of the model that become table columns, in model order."""
        return [p for p in self.outputs if p not in NON_COLUMN_OUTPUTS]

    @property
    def columns(self) -> list[str]:
        """All table columns, in order."""
        props = [property_column(p, self.outputs) for p in self.properties]
        return BASE_COLUMNS + props + ["error"]

    def run(self, entries: Sequence[Entry], forces: bool = False,
            progress: Callable[[int], None] | None = None) -> list[Entry]:
        """Predict every entry that has a structure; fill ``values``/``forces`` or ``error``.

        ``progress(n)`` is called with the number of entries finished after each batch.
        """
        forces = forces and keys.FORCES in self.outputs
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
        return list(entries)

    def _graph(self, entry: Entry):
        message = element_error(entry.atoms, self.elements)
        if not message:
            try:
                return atoms_to_graph(bare_atoms(entry.atoms), self.cutoff, dtype=self.dtype)
            except InputError as err:
                message = err.reason
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
                "smiles": e.smiles,
                "formula": e.atoms.get_chemical_formula() if e.atoms is not None else "",
                "n_atoms": len(e.atoms) if e.atoms is not None else pd.NA,
            }
            for prop in self.properties:
                col = property_column(prop, self.outputs)
                row[col] = e.values.get(col, np.nan) if not e.error else np.nan
            row["error"] = e.error
            rows.append(row)
        df = pd.DataFrame(rows, columns=self.columns)
        df["index"] = df["index"].astype("Int64")
        df["n_atoms"] = df["n_atoms"].astype("Int64")
        return df


def molecules_to_entries(molecules: Sequence[str | ase.Atoms], source: str = "api",
                         n_jobs: int = 1) -> list[Entry]:
    """Entries from a list of SMILES strings and/or structures (record = 0-based position)."""
    entries: list[Entry | None] = [None] * len(molecules)
    smiles_pos = [i for i, m in enumerate(molecules) if isinstance(m, str)]
    for i, mol in enumerate(molecules):
        if isinstance(mol, ase.Atoms):
            entries[i] = Entry.from_atoms(mol, source, i)
        elif not isinstance(mol, str):
            entries[i] = Entry(source, i, error=f"not a SMILES string or ase.Atoms: "
                                                f"{type(mol).__name__}")
    if smiles_pos:
        for i, entry in zip(smiles_pos, embed_smiles([molecules[i] for i in smiles_pos],
                                                     source, n_jobs), strict=True):
            entry.index, entry.id = i, f"{source}:{i}"
            entries[i] = entry
    return [e for e in entries if e is not None]


def predict(model: Any, molecules: Sequence[str | ase.Atoms], *, device: str = "cpu",
            dtype: str | None = None, batch_atoms: int = DEFAULT_BATCH_ATOMS,
            n_jobs: int = 1, compile: bool = False) -> pd.DataFrame:
    """Predict the properties of SMILES strings and/or ``ase.Atoms`` (one row each, in order).

    SMILES are embedded in 3D by molsym's SMILES reader (RDKit). Returns the table described
    in this module's docstring; failed molecules have an ``error`` and NaN properties.
    ``compile=True`` runs the model through ``torch.compile`` (worth it for many molecules).
    """
    predictor = Predictor(model, device=device, dtype=dtype, batch_atoms=batch_atoms,
                          compile=compile)
    entries = predictor.run(molecules_to_entries(list(molecules), n_jobs=n_jobs))
    return predictor.table(entries)


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype) and dtype in table.values():
        return dtype
    if isinstance(dtype, str) and dtype in table:
        return table[dtype]
    raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def embed_smiles(smiles: Sequence[str], source: str = "cli", n_jobs: int = 1) -> list[Entry]:
    """3D structures of SMILES strings (molsym's SMILES reader: RDKit ETKDG + MMFF) embedded
    in ``n_jobs`` processes. One :class:`Entry` per string, in order (index = 0-based
    position); a SMILES that cannot be parsed or embedded gets an entry with ``error`` set.
    """
    from molsym.data.readers import read_smiles

    smiles = [str(s) for s in smiles]
    errors: list = []
    atoms = read_smiles(smiles, num_workers=max(1, int(n_jobs)), on_error="skip",
                        errors=errors, source=source)
    entries = merge_in_order(atoms, errors, source)
    for entry in entries:
        if not entry.smiles and isinstance(entry.index, int) and entry.index < len(smiles):
            entry.smiles = smiles[entry.index]
    return entries
