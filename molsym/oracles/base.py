"""What an oracle is: a small factory (its constructor arguments are its config) that makes
an ASE calculator for one structure of a given total charge and spin multiplicity.

Any ASE calculator can be an oracle through :class:`CalculatorOracle`, built from the
user's own Hydra config (``_target_``); oracles are never built from a model or a data file.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.data import chemical_symbols

from molsym.errors import ConfigError, MolsymError


class OracleError(MolsymError, RuntimeError):
    """The oracle cannot label this input at all (e.g. it fails on every structure)."""


class Oracle:
    """Base class: subclasses are dataclasses whose fields are the config.

    ``name`` goes into every stored frame; ``takes_charge`` says whether the total charge
    and the multiplicity reach the calculator (an oracle that ignores them refuses charged
    and open-shell structures rather than label them wrongly).
    """

    name: ClassVar[str] = "oracle"
    takes_charge: ClassVar[bool] = True

    def calculator(self, charge: int = 0, multiplicity: int = 1) -> BaseCalculator:
        """A fresh ASE calculator for a structure of ``charge`` (e) and ``multiplicity``."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line) if the oracle cannot run here at all (its
        package is not installed); called once before any worker starts."""

    def supports(self, z: int) -> bool:
        """Whether the oracle can treat element ``z`` (atomic number)."""
        return 1 <= z <= 118

    def support_note(self) -> str:
        """One phrase saying which elements the oracle covers (for error messages)."""
        return "it covers no such elements"

    def config(self) -> dict[str, Any]:
        """``_target_`` plus the constructor arguments: the Hydra config that rebuilds it."""
        cls = type(self)
        fields = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **_plain(fields)}


def _plain(value: Any) -> Any:
    """A JSON-friendly view of a config value (callables by their import path)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):  # dict, omegaconf DictConfig
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):  # list, tuple, omegaconf ListConfig
        return [_plain(v) for v in value]
    if isinstance(value, functools.partial):
        return {"_target_": _path(value.func), "_partial_": True, **_plain(value.keywords)}
    if isinstance(value, BaseCalculator):
        return {"_target_": _path(type(value)), **_plain(dict(getattr(value, "parameters", {})))}
    if callable(value):
        return {"_target_": _path(value), "_partial_": True}
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def _path(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


@dataclasses.dataclass(frozen=True)
class CalculatorOracle(Oracle):
    """A user's own ASE calculator as an oracle.

    ``factory`` makes the calculator (in Hydra: the calculator's ``_target_`` with
    ``_partial_: true``) or is a calculator instance (copied for each structure). With
    ``takes_charge=True`` it is called as ``factory(charge=..., multiplicity=...)``;
    otherwise charged or open-shell structures are refused. ``elements`` (symbols) limits the
    elements it is given; ``None`` lets every element through.
    """

    factory: Callable[..., BaseCalculator] | BaseCalculator
    name: str = "custom"  # type: ignore[misc]
    takes_charge: bool = False  # type: ignore[misc]
    elements: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.elements is not None:  # a Hydra ListConfig: plain, hashable symbols
            object.__setattr__(self, "elements", tuple(str(e) for e in self.elements))

    def calculator(self, charge: int = 0, multiplicity: int = 1) -> BaseCalculator:
        factory = self.factory
        if isinstance(factory, BaseCalculator):
            return copy.deepcopy(factory)
        if self.takes_charge:
            return factory(charge=charge, multiplicity=multiplicity)
        return factory()

    def supports(self, z: int) -> bool:
        return self.elements is None or chemical_symbols[z] in self.elements

    def support_note(self) -> str:
        return f"it is configured for {', '.join(self.elements or ())}"


def as_oracle(oracle: Oracle | BaseCalculator) -> Oracle:
    """An :class:`Oracle` as is; a bare ASE calculator instance wrapped (neutral singlets)."""
    if isinstance(oracle, Oracle):
        return oracle
    if isinstance(oracle, BaseCalculator):
        return CalculatorOracle(oracle, name=type(oracle).__name__)
    raise TypeError(f"an oracle must be a molsym Oracle or an ASE calculator, got {oracle!r}")


def unsupported_elements(oracle: Oracle, numbers: np.ndarray) -> list[int]:
    """Atomic numbers in ``numbers`` that ``oracle`` does not cover, sorted."""
    return sorted(int(z) for z in set(np.asarray(numbers).tolist()) if not oracle.supports(int(z)))


def element_error(oracle: Oracle, missing: list[int], count: int, total: int, first: str) -> str:
    """The one-line message for structures with elements the oracle does not cover."""
    names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in missing)
    return (
        f"oracle {oracle.name} does not support {names}: {count} of {total} structures hold "
        f"them (first: {first}); {oracle.support_note()}"
    )


def check_elements(oracle: Oracle, structures: list[Atoms]) -> None:
    """Raise :class:`ConfigError` (one line) if any structure holds an uncovered element."""
    missing: set[int] = set()
    count, first = 0, ""
    for k, atoms in enumerate(structures):
        bad = unsupported_elements(oracle, atoms.numbers)
        if bad:
            missing.update(bad)
            count += 1
            first = first or str(atoms.info.get("id", f"structure {k}"))
    if missing:
        raise ConfigError(element_error(oracle, sorted(missing), count, len(structures), first))


def run_oracle(
    oracle: Oracle, atoms: Atoms, charge: int, multiplicity: int
) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (N, 3) eV/Angstrom of ``atoms`` from a fresh calculator.
    Raises on failure, including non-finite or misshapen results."""
    atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                  pbc=atoms.pbc)
    atoms.calc = oracle.calculator(charge, multiplicity)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        energy = float(atoms.get_potential_energy())
        forces = np.array(atoms.get_forces(), dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"forces of shape {forces.shape} for {len(atoms)} atoms")
    if not np.isfinite(energy):
        raise ValueError(f"non-finite energy {energy}")
    if not np.isfinite(forces).all():
        raise ValueError("non-finite forces")
    return energy, forces


def describe_error(err: BaseException, limit: int = 300) -> str:
    """``"Type: first line of the message"``, at most ``limit`` characters."""
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


__all__ = [
    "CalculatorOracle",
    "ConfigError",
    "Oracle",
    "OracleError",
    "as_oracle",
    "check_elements",
    "describe_error",
    "element_error",
    "run_oracle",
    "unsupported_elements",
]
