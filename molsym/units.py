"""Unit conversions. molsym works in eV, Angstrom, eV/Angstrom and e internally; every
conversion happens at the edges, with the constants of ase.units, and only here."""

from __future__ import annotations

from typing import NamedTuple

from ase import units as _u

EV = 1.0
MEV = 1e-3
HARTREE = _u.Hartree  # eV
KCAL_PER_MOL = _u.kcal / _u.mol  # eV
KJ_PER_MOL = _u.kJ / _u.mol  # eV
BOHR = _u.Bohr  # Angstrom
DEBYE = _u.Debye  # e*Angstrom

#: Factor that converts a value in the named unit to molsym's internal unit.
TO_INTERNAL: dict[str, float] = {
    "eV": EV,
    "meV": MEV,
    "Hartree": HARTREE,
    "Ha": HARTREE,
    "kcal/mol": KCAL_PER_MOL,
    "kJ/mol": KJ_PER_MOL,
    "Angstrom": 1.0,
    "Bohr": BOHR,
    "eV/Angstrom": 1.0,
    "Hartree/Bohr": HARTREE / BOHR,
    "kcal/mol/Angstrom": KCAL_PER_MOL,
    "e*Angstrom": 1.0,
    "Debye": DEBYE,
    "Bohr^3": BOHR**3,
    "Angstrom^3": 1.0,
    "Bohr^2": BOHR**2,
    "Angstrom^2": 1.0,
    "GHz": 1.0,
    "cal/mol/K": 1.0,
    "dimensionless": 1.0,
}



class Quantity(NamedTuple):
    """Units of one named quantity: inside molsym, in the predict table's column name, and in
    error reports; shown value = internal value / factor."""

    internal: str
    column: str | None  # None: not a table column (per-atom or tensor)
    column_factor: float
    report: str
    report_factor: float


_E = ("eV", EV, "meV", MEV)  # orbital and thermochemical energies
#: Every named quantity once (QM9's names as molsym's QM9 reader gives them).
QUANTITIES: dict[str, Quantity] = {
    "energy": Quantity("eV", *_E),
    "energy_per_atom": Quantity("eV/atom", None, 1.0, "meV/atom", MEV),
    "forces": Quantity("eV/Angstrom", None, 1.0, "meV/Angstrom", MEV),
    "stress": Quantity("eV/Angstrom^3", None, 1.0, "meV/Angstrom^3", MEV),
    "dipole": Quantity("e*Angstrom", "D", DEBYE, "D", DEBYE),  # column: the magnitude
    "dipole_moment": Quantity("e*Angstrom", "D", DEBYE, "D", DEBYE),  # QM9's magnitude
    "charges": Quantity("e", None, 1.0, "e", 1.0),
    **{name: Quantity("eV", *_E) for name in ("homo", "lumo", "gap", "zpve", "u0", "u",
                                                "h", "g")},
    "alpha": Quantity("Angstrom^3", "Angstrom3", 1.0, "Angstrom^3", 1.0),
    "polarizability": Quantity("Angstrom^3", "Angstrom3", 1.0, "Angstrom^3", 1.0),
    "r2": Quantity("Angstrom^2", "Angstrom2", 1.0, "Angstrom^2", 1.0),
    "cv": Quantity("cal/mol/K", "cal_mol_K", 1.0, "cal/mol/K", 1.0),
    **{name: Quantity("GHz", "GHz", 1.0, "GHz", 1.0) for name in ("A", "B", "C")},
}

#: Internal unit of each named quantity.
INTERNAL_UNIT: dict[str, str] = {name: q.internal for name, q in QUANTITIES.items()}
#: Predict-table column unit and factor of each quantity that is a column.
COLUMN_UNITS: dict[str, tuple[str, float]] = {
    name: (q.column, q.column_factor) for name, q in QUANTITIES.items() if q.column}
#: Error-report unit and factor of each quantity.
REPORT_UNITS: dict[str, tuple[str, float]] = {
    name: (q.report, q.report_factor) for name, q in QUANTITIES.items()}
#: Units a deploy file records for its outputs and inputs.
DEPLOY_UNITS: dict[str, str] = {
    **{k: INTERNAL_UNIT[k] for k in ("energy", "forces", "stress", "dipole", "charges")},
    "positions": "Angstrom",
}


def to_internal(value, unit: str):
    """Convert ``value`` given in ``unit`` to molsym's internal unit."""
    try:
        return value * TO_INTERNAL[unit]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known: {sorted(TO_INTERNAL)}") from None


def from_internal(value, unit: str):
    """Convert ``value`` in molsym's internal unit to ``unit``."""
    try:
        return value / TO_INTERNAL[unit]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known: {sorted(TO_INTERNAL)}") from None
