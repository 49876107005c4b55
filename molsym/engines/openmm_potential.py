"""molsym as an openmm-ml potential: ``MLPotential("molsym", modelPath="model.pt")``.

openmm-ml finds this module through the ``openmmml.potentials`` entry point ``molsym``
(pyproject.toml), so after ``pip install molsym[openmm]``::

    from openmmml import MLPotential
    potential = MLPotential("molsym", modelPath="model.pt")        # or model=<module>
    system = potential.createSystem(topology)                      # everything in ML
    mixed = potential.createMixedSystem(topology, mm_system, ml_atoms)   # ML/MM

The forces are an ``openmm.PythonForce`` (tested with OpenMM 8.6.1, openmm-ml 1.8) that calls
:class:`molsym.inference.calculator.MolsymCalculator`; no compiled plugin (openmm-torch) is needed.
Units change only here, at the edge: OpenMM gives nm and takes kJ/mol and kJ/mol/nm; the
model works in Angstrom, eV and eV/Angstrom.

Arguments of ``MLPotential("molsym", ...)``: ``modelPath`` (a deploy file or a pretrained
name) or ``model`` (a molsym module); ``device`` (default ``"cpu"``), ``dtype`` (default
``"float64"``), ``compile`` (default "auto": large systems only), as for ``MolsymCalculator``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ase
import ase.data
import numpy as np
import openmm
from ase import units as ase_units
from openmm import unit
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from molsym.errors import ConfigError
from molsym.inference.calculator import MolsymCalculator

#: kJ/mol per eV (OpenMM's energy unit per molsym's).
KJ_PER_MOL_PER_EV = 1.0 / (ase_units.kJ / ase_units.mol)
#: Angstrom per nm.
ANGSTROM_PER_NM = 10.0


class MolsymPotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`MolsymPotentialImpl`; the target of the ``openmmml.potentials`` entry
    point ``molsym``."""

    def createImpl(self, name: str, **args: Any) -> MLPotentialImpl:
        return MolsymPotentialImpl(name, **args)


class MolsymPotentialImpl(MLPotentialImpl):
    """Adds a molsym model to an OpenMM System as a ``PythonForce``.

    Args:
        name: the potential's name (``"molsym"``).
        modelPath: deploy file (``model.pt``) or pretrained name; or give ``model``.
        model: a molsym model module (instead of ``modelPath``).
        device, dtype, compile: as for :class:`MolsymCalculator`.
    """

    def __init__(self, name: str, modelPath: str | None = None, model: Any = None,
                 device: str = "cpu", dtype: str = "float64", compile: bool | str = "auto") -> None:
        if (modelPath is None) == (model is None):
            raise ConfigError("MLPotential('molsym') needs exactly one of modelPath= or model=")
        self.name = name
        self.calculator = MolsymCalculator(model if model is not None else modelPath,
                                           device=device, dtype=dtype, compile=compile)

    def addForces(self, topology: openmm.app.Topology, system: openmm.System,
                  atoms: Iterable[int] | None, forceGroup: int, **args: Any) -> None:
        """Add the model's energy and forces for ``atoms`` (all when None) to ``system``."""
        if args:
            raise ConfigError(f"unknown arguments for the molsym potential: {sorted(args)}")
        included = list(topology.atoms())
        if atoms is not None:
            atoms = list(atoms)
            included = [included[i] for i in atoms]
        if any(a.element is None for a in included):
            raise ConfigError("every ML atom of the Topology needs an element")
        periodic = topology.getPeriodicBoxVectors() is not None
        numbers = [a.element.atomic_number for a in included]
        force = openmm.PythonForce(MolsymCompute(self.calculator, numbers, periodic))
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(atoms)
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """molsym energies are local (a sum over atoms within the cutoff): in a periodic ML/MM
        system the MM force field keeps the ML atoms' long-range (PME) electrostatics."""
        return False


class MolsymCompute:
    """The PythonForce's computation: OpenMM State (nm) -> (kJ/mol, kJ/mol/nm array (N, 3)).

    For a periodic Topology the ML atoms see the State's box (ML atoms in a box of water: the
    model's neighbour list takes the minimum images, so a molecule split by wrapping stays
    whole for the model).
    """

    def __init__(self, calculator: MolsymCalculator, numbers: list[int],
                 periodic: bool) -> None:
        self.calculator = calculator
        self.atoms = ase.Atoms(numbers=numbers, pbc=periodic)
        self.periodic = periodic

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        pos_nm = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        atoms = self.atoms
        atoms.positions = np.asarray(pos_nm) * ANGSTROM_PER_NM
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            atoms.cell = np.asarray(box) * ANGSTROM_PER_NM
        self.calculator.calculate(atoms, ["energy", "forces"])
        energy = self.calculator.results["energy"] * KJ_PER_MOL_PER_EV
        forces = self.calculator.results["forces"] * (KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM)
        return energy, forces


def topology_from_atoms(atoms: ase.Atoms) -> tuple[openmm.app.Topology, unit.Quantity]:
    """An OpenMM Topology (one residue, no bonds) and positions (nm) for ``atoms``; the box
    is set when ``atoms`` is periodic in all three directions."""
    topology = openmm.app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for k, z in enumerate(atoms.numbers):
        topology.addAtom(f"{ase.data.chemical_symbols[z]}{k}",
                         openmm.app.Element.getByAtomicNumber(int(z)), residue)
    if atoms.pbc.all():
        topology.setPeriodicBoxVectors(atoms.cell.array / ANGSTROM_PER_NM * unit.nanometer)
    return topology, atoms.positions / ANGSTROM_PER_NM * unit.nanometer
