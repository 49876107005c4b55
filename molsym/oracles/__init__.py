"""Oracles: where labels come from. An oracle makes an ASE calculator for a structure of a
given total charge and multiplicity; :func:`label` runs it over many structures in worker
processes and stores the results resumably (see docs/oracles.md).

Shipped as the Hydra group ``oracle`` (``xtb``, ``pyscf``, ``emt``); a user's own
calculator goes through :class:`CalculatorOracle`.
"""

from molsym.oracles.base import (
    CalculatorOracle,
    Oracle,
    OracleError,
    as_oracle,
    check_elements,
    run_oracle,
)
from molsym.oracles.dft import PySCFCalculator, PySCFOracle, SCFNotConverged
from molsym.oracles.emt import EMTOracle
from molsym.oracles.labelling import LabelReport, label, structure_key
from molsym.oracles.spin import add_multiplicity, charge_and_multiplicity, multiplicity_from_smiles
from molsym.oracles.xtb import XTBOracle

__all__ = [
    "CalculatorOracle",
    "EMTOracle",
    "LabelReport",
    "Oracle",
    "OracleError",
    "PySCFCalculator",
    "PySCFOracle",
    "SCFNotConverged",
    "XTBOracle",
    "add_multiplicity",
    "as_oracle",
    "charge_and_multiplicity",
    "check_elements",
    "label",
    "multiplicity_from_smiles",
    "run_oracle",
    "structure_key",
]
