"""GFN-xTB tight binding through tblite (``pip install molsym[xtb]``)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ase.calculators.calculator import BaseCalculator

from molsym.errors import ConfigError
from molsym.oracles.base import Oracle

_MAX_Z = {"GFN2-xTB": 86, "GFN1-xTB": 86, "IPEA1-xTB": 86}


@dataclasses.dataclass(frozen=True)
class XTBOracle(Oracle):
    """GFN2-xTB (or ``GFN1-xTB``, ``IPEA1-xTB``) single points with ``tblite.ase.TBLite``.

    ``accuracy`` scales the SCF thresholds (lower is tighter), ``electronic_temperature`` in
    K, ``max_iterations`` SCF cycles (an SCF that does not converge is a failed label).
    """

    method: str = "GFN2-xTB"
    accuracy: float = 1.0
    electronic_temperature: float = 300.0
    max_iterations: int = 250

    name: ClassVar[str] = "xtb"

    def __post_init__(self) -> None:
        if self.method not in _MAX_Z:
            raise ValueError(f"unknown xTB method {self.method!r}; known: {sorted(_MAX_Z)}")

    def check(self) -> None:
        try:
            import tblite.ase  # noqa: F401
        except ImportError:
            raise ConfigError("the xtb oracle needs tblite: pip install 'molsym[xtb]'") from None

    def calculator(self, charge: int = 0, multiplicity: int = 1) -> BaseCalculator:
        from tblite.ase import TBLite

        return TBLite(
            method=self.method,
            charge=int(charge),
            multiplicity=int(multiplicity),
            accuracy=self.accuracy,
            electronic_temperature=self.electronic_temperature,
            max_iterations=self.max_iterations,
            verbosity=0,
        )

    def supports(self, z: int) -> bool:
        return 1 <= z <= _MAX_Z[self.method]

    def support_note(self) -> str:
        return f"{self.method} covers H-Rn (Z 1-{_MAX_Z[self.method]})"
