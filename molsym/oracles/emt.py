"""ASE's effective medium theory: fast, for tests (neutral singlets of its few elements)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ase.calculators.calculator import BaseCalculator
from ase.data import atomic_numbers

from molsym.oracles.base import Oracle


def _emt_elements() -> frozenset[int]:
    from ase.calculators.emt import parameters

    return frozenset(atomic_numbers[s] for s in parameters)


@dataclasses.dataclass(frozen=True)
class EMTOracle(Oracle):
    """``ase.calculators.emt.EMT`` (H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au). It knows no
    charge or spin, so charged and open-shell structures are refused."""

    name: ClassVar[str] = "emt"
    takes_charge: ClassVar[bool] = False

    def calculator(self, charge: int = 0, multiplicity: int = 1) -> BaseCalculator:
        from ase.calculators.emt import EMT

        return EMT()

    def supports(self, z: int) -> bool:
        return z in _emt_elements()

    def support_note(self) -> str:
        from ase.data import chemical_symbols

        return "EMT covers " + ", ".join(chemical_symbols[z] for z in sorted(_emt_elements()))
