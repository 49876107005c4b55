"""A probe oracle for the labelling tests: EMT that counts its calls in a file and can be
told to sleep, fail, crash its worker or hang on chosen structures (by atom count)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import ClassVar

from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.calculators.emt import EMT

from molsym.oracles import EMTOracle, Oracle


class _ProbeCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, probe: ProbeOracle):
        super().__init__()
        self.probe = probe

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        p, n = self.probe, len(self.atoms)
        if p.counter:
            with open(p.counter, "a") as fh:
                fh.write(f"{n} {os.environ.get('OMP_NUM_THREADS')}\n")
        time.sleep(p.sleep_s)
        if p.fail_all:
            raise CalculationFailed("SCF not converged in 0 cycles")
        if n == p.crash_on:
            os._exit(3)
        if n == p.hang_on:
            time.sleep(600)
        emt = EMT()
        emt.calculate(self.atoms, properties, system_changes)
        self.results = dict(emt.results)


@dataclasses.dataclass(frozen=True)
class ProbeOracle(Oracle):
    counter: str = ""
    sleep_s: float = 0.0
    fail_all: bool = False
    crash_on: int = 0
    hang_on: int = 0

    name: ClassVar[str] = "probe"
    takes_charge: ClassVar[bool] = False

    def calculator(self, charge: int = 0, multiplicity: int = 1) -> Calculator:
        return _ProbeCalculator(self)

    def supports(self, z: int) -> bool:
        return EMTOracle().supports(z)

    def config(self) -> dict:
        """The call counter and the delay are instruments, not part of the level of theory:
        runs that differ only in them may share an output folder."""
        config = super().config()
        del config["counter"], config["sleep_s"]
        return config


def calls(counter) -> int:
    """Number of oracle calls recorded in ``counter`` (0 if it does not exist)."""
    try:
        with open(counter) as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0
