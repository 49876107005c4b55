"""ASE calculator for molsym models: energy, forces, stress (periodic cells), dipole.

The model carries its own cutoff and element list, so the calculator needs nothing else::

    from molsym import MolsymCalculator, load_model
    atoms.calc = MolsymCalculator(load_model("model.pt"), device="cpu", dtype="float64")
    atoms.get_potential_energy()  # eV
"""

from __future__ import annotations

import logging
from typing import Any

import ase
import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.elements import not_covered
from molsym.errors import InputError
from molsym.inference.extrapolation import (
    close_pairs_warning,
    composition_warning,
    energy_reference,
    radial_floors,
)
from molsym.inference.inputs import bare_atoms
from molsym.inference.model import model_facts, prepare_model
from molsym.memory import apply_memory_limit, check_fits, estimated_edges
from molsym.models.ensemble import std_key

log = logging.getLogger(__name__)


class MolsymCalculator(Calculator):
    """ASE calculator wrapping a molsym model.

    Args:
        model: a molsym model, a deploy-file path or a pretrained name (e.g. ``"qm9"``).
        device: ``"cpu"`` or ``"cuda"`` (or a torch device).
        dtype: ``"float64"`` (default; best for MD and optimisation) or ``"float32"``.
        memory_limit: memory one evaluation may use (bytes or e.g. ``"16GB"``; default: the
            ``MOLSYM_MEMORY_LIMIT`` variable, else what the system has available); a structure
            estimated to need more raises :class:`~molsym.memory.MemoryLimitError`, whose
            message says how many atoms fit, before the model runs.
        compile: run the model through ``torch.compile(dynamic=True)``: True for every
            structure (worth it for MD of small molecules too), False never, ``"auto"``
            (default) for structures of :data:`~molsym.models.compiled.AUTO_COMPILE_EDGES`
            edges and more (a 10^4-atom water box ran 4.8x faster compiled). The first
            compiled call compiles (tens of seconds on a CPU); later calls, new geometries and
            other sizes included, reuse the compiled graph.

    Results: ``energy``/``free_energy`` (eV), ``forces`` (N, 3) eV/Angstrom, ``stress`` (6,)
    Voigt order xx, yy, zz, yz, xz, xy in eV/Angstrom^3 (only for cells periodic in all three
    directions, and only when the model can compute it), ``dipole`` (3,) e*Angstrom when the
    model predicts one, and any other per-molecule scalar the model predicts (e.g. ``homo``).
    A committee (``molsym ensemble``, ``EnsembleModel``) adds its spread: ``energy_std`` (eV),
    ``forces_std`` (N,) eV/Angstrom per atom, ``dipole_std`` and ``<property>_std``.

    A deploy file whose training compositions did not determine every per-element reference
    energy (``metadata["energy_reference"]``, e.g. one molecule's frames) logs a warning, once
    per composition, for a composition outside their span: its energy is not comparable with
    those of other compositions (forces are unaffected). The first structure with two atoms
    closer than the model's radial floor for them logs a warning too (once per calculator).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "dipole"]
    default_parameters: dict[str, Any] = {}

    def __init__(self, model: Any, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64", compile: bool | str = "auto",
                 memory_limit: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        module, self.model, self._forward, self.device, self.dtype = prepare_model(
            model, device, dtype, compile)
        self.compiled = compile
        self.cutoff, self.elements, self.outputs = model_facts(module)
        self.memory_limit = memory_limit
        apply_memory_limit(self.model, memory_limit)
        self.energy_reference = (energy_reference(model) if keys.ENERGY in self.outputs
                                 else None)
        self._checked_compositions: set[tuple[int, ...]] = set()
        #: the model's radial floors; the first structure with atoms closer logs a warning
        self.floors = radial_floors(module)
        self._warned_close = False

    def _check_composition(self, atoms: ase.Atoms) -> None:
        """Log :data:`molsym.inference.extrapolation.COMPOSITION_WARNING` once per composition."""
        if self.energy_reference is None:
            return
        numbers = tuple(sorted(int(z) for z in atoms.numbers))
        if numbers in self._checked_compositions:
            return
        self._checked_compositions.add(numbers)
        message = composition_warning(np.asarray(numbers), self.energy_reference)
        if message:
            log.warning("%s: %s", atoms.get_chemical_formula(), message)

    def _check_close_pairs(self, atoms: ase.Atoms, graph) -> None:
        """Log :func:`~molsym.inference.extrapolation.close_pairs_warning` for the first
        structure that has atoms inside the model's radial floor (MD: once per run)."""
        if self._warned_close or not self.floors:
            return
        message = close_pairs_warning(graph, self.floors)
        if message:
            self._warned_close = True
            log.warning("%s: %s (logged once)", atoms.get_chemical_formula(), message)

    def calculate(self, atoms: ase.Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        """Compute ``properties`` (all the model gives) for ``atoms``; see the class docstring."""
        from torch_geometric.data import Batch

        from molsym.models import predict_batch

        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        message = not_covered(atoms.numbers, self.elements)
        if message:
            raise InputError(message, atoms.info.get("source"), atoms.info.get("record"))
        self._check_composition(atoms)
        stress = "stress" in properties
        if stress and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
        if ("forces" in properties or stress) and keys.FORCES not in self.outputs:
            raise PropertyNotImplementedError(
                f"this model predicts no forces or stress (outputs: {', '.join(self.outputs)})"
            )
        bare = bare_atoms(atoms)
        check_fits(self.model, len(bare), estimated_edges(bare, self.cutoff), self.dtype,
                   self.memory_limit, estimated=True)
        graph = atoms_to_graph(bare, self.cutoff, dtype=self.dtype)
        check_fits(self.model, len(bare), int(graph[keys.EDGE_INDEX].shape[1]), self.dtype,
                   self.memory_limit)
        self._check_close_pairs(atoms, graph)
        batch = Batch.from_data_list([graph]).to(self.device)
        forces = keys.FORCES in self.outputs
        with torch.set_grad_enabled(forces or stress):
            out = predict_batch(self._forward, batch, compute_forces=forces,
                                compute_stress=stress)
        self.results = self._convert(out, stress)

    def _convert(self, out: dict[str, torch.Tensor], stress: bool) -> dict[str, Any]:
        def np_(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float64).numpy()

        results: dict[str, Any] = {}
        for name, tensor in out.items():
            if name == keys.ENERGY:
                results["energy"] = results["free_energy"] = float(np_(tensor)[0])
            elif name == keys.FORCES:
                results["forces"] = np_(tensor)
            elif name == keys.STRESS:
                if stress:
                    s = np_(tensor)[0]
                    results["stress"] = np.array(
                        [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
                    )
            elif name == keys.DIPOLE:
                results["dipole"] = np_(tensor)[0]
            elif name == std_key(keys.FORCES):  # a committee's per-atom force spread
                results[name] = np_(tensor)
            elif tensor.dim() == 1 and tensor.numel() == 1:
                results[name] = float(np_(tensor)[0])
        return results
