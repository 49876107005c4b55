"""DFT (or Hartree-Fock) through PySCF (``pip install molsym[dft]``).

PySCF ships no maintained ASE calculator, so :class:`PySCFCalculator` is a small one:
restricted Kohn-Sham for singlets, unrestricted otherwise, analytic nuclear gradients.
PySCF works in Hartree and Bohr; results are converted with ``ase.units`` to eV and
eV/Angstrom.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, ClassVar

import numpy as np
from ase import units
from ase.calculators.calculator import BaseCalculator, CalculationFailed, Calculator, all_changes
from ase.data import chemical_symbols

from molsym.errors import ConfigError
from molsym.oracles.base import Oracle


class SCFNotConverged(CalculationFailed):
    """The SCF did not reach ``conv_tol`` within ``max_cycle`` cycles."""


class PySCFCalculator(Calculator):
    """ASE calculator: PySCF single point, energy (eV) and forces (eV/Angstrom).

    ``xc`` is any PySCF functional name, or ``"HF"`` for Hartree-Fock; ``basis`` any PySCF
    basis name. ``charge`` (e) and ``multiplicity`` (2S+1) define the electronic state;
    ``multiplicity == 1`` runs RKS/RHF, anything else UKS/UHF. ``grid_level`` is PySCF's
    DFT integration grid level (0-9). Non-periodic structures only.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters: dict[str, Any] = {
        "xc": "PBE",
        "basis": "sto-3g",
        "charge": 0,
        "multiplicity": 1,
        "max_cycle": 50,
        "conv_tol": 1e-9,
        "grid_level": 3,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from pyscf import dft, gto, scf

        p = self.parameters
        if self.atoms.pbc.any():
            raise CalculationFailed("PySCFCalculator treats non-periodic structures only")
        mol = gto.M(
            atom=[(s, tuple(x)) for s, x in zip(self.atoms.get_chemical_symbols(),
                                                  self.atoms.positions, strict=True)],
            unit="Angstrom",
            basis=p.basis,
            charge=int(p.charge),
            spin=int(p.multiplicity) - 1,
            verbose=0,
        )
        restricted = int(p.multiplicity) == 1
        if str(p.xc).upper() == "HF":
            mf = scf.RHF(mol) if restricted else scf.UHF(mol)
        else:
            mf = dft.RKS(mol) if restricted else dft.UKS(mol)
            mf.xc = p.xc
            mf.grids.level = int(p.grid_level)
        mf.chkfile = None  # no checkpoint file per structure in $TMPDIR
        mf.max_cycle = int(p.max_cycle)
        mf.conv_tol = float(p.conv_tol)
        energy = mf.kernel()
        if not mf.converged:
            raise SCFNotConverged(f"SCF not converged in {p.max_cycle} cycles")
        gradient = mf.nuc_grad_method().kernel()  # (N, 3) Hartree/Bohr
        self.results["energy"] = float(energy) * units.Hartree
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = -np.asarray(gradient) * units.Hartree / units.Bohr


@functools.lru_cache(maxsize=1024)
def basis_covers(basis: str, z: int) -> bool:
    """Whether PySCF's basis set ``basis`` has functions for element ``z``."""
    from pyscf.gto import basis as pyscf_basis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(pyscf_basis.load(basis, chemical_symbols[z]))
        except Exception:  # BasisNotFoundError, or an unknown basis name
            return False


@dataclasses.dataclass(frozen=True)
class PySCFOracle(Oracle):
    """PySCF DFT single points: functional ``xc`` (``"HF"`` for Hartree-Fock), ``basis``,
    at most ``max_cycle`` SCF cycles to ``conv_tol`` (Hartree), DFT grid ``grid_level``."""

    xc: str = "PBE"
    basis: str = "sto-3g"
    max_cycle: int = 50
    conv_tol: float = 1e-9
    grid_level: int = 3

    name: ClassVar[str] = "pyscf"

    def check(self) -> None:
        try:
            import pyscf  # noqa: F401
        except ImportError:
            raise ConfigError("the pyscf oracle needs PySCF: pip install 'molsym[dft]'") from None
        if not basis_covers(self.basis, 1) and not basis_covers(self.basis, 6):
            raise ConfigError(f"PySCF knows no basis set {self.basis!r} (not even for H or C)")

    def calculator(self, charge: int = 0, multiplicity: int = 1) -> BaseCalculator:
        return PySCFCalculator(
            xc=self.xc, basis=self.basis, charge=int(charge), multiplicity=int(multiplicity),
            max_cycle=self.max_cycle, conv_tol=self.conv_tol, grid_level=self.grid_level,
        )

    def supports(self, z: int) -> bool:
        return basis_covers(self.basis, z)

    def support_note(self) -> str:
        return f"basis {self.basis} has no functions for them"
