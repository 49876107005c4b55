"""Unit conversions. molsym works in eV, Angstrom, eV/Angstrom and e internally; every
conversion happens at the edges, with the constants of ase.units, and only here."""

from __future__ import annotations

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

#: Internal unit of each named quantity (used for column names and reports).
INTERNAL_UNIT: dict[str, str] = {
    "energy": "eV",
    "forces": "eV/Angstrom",
    "stress": "eV/Angstrom^3",
    "dipole": "e*Angstrom",
    "charges": "e",
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
