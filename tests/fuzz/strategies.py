"""Shared hypothesis strategies and checks of the fuzz suite."""

from __future__ import annotations

import ase
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from molsym.errors import InputError, MolsymError

#: SMILES pieces: valid atoms, charges, isotopes, stereo, aromatic atoms (valid and not),
#: elements the test model does not cover, ring closures, branches, bonds, fragment dots.
SMILES_TOKENS = [
    "C", "C", "C", "c", "N", "n", "O", "o", "F", "Cl", "S", "Br", "P", "B", "[nH]",
    "[13CH4]", "[2H]", "[NH4+]", "[O-]", "[CH3+]", "[C@@H]", "[C@H]", "[Fe]", "[Si]", "[Na+]",
    "1", "1", "2", "(", ")", "=", "#", "/", "\\", ".", "c1ccccc1", "c1cccc1", "C1CC1", "[",
    "]", "@", "+", "%", "*",
]
smiles = st.one_of(
    st.lists(st.sampled_from(SMILES_TOKENS), min_size=0, max_size=8).map("".join),
    st.sampled_from(["CCO", "c1ccccc1O", "CC(=O)O", "C", "[Cl-].[Na+]", "CCO.O"]),
    st.text(max_size=6),
)

#: Small valid molecules (H, C, N, O) with a sane geometry.
MOLECULES = ["H2O", "CH4", "NH3", "CH3OH", "C2H6", "HCOOH", "CH3CN", "C2H4"]


def molecule(name: str) -> ase.Atoms:
    from ase.build import molecule as build

    return build(name)


def check_molsym_error(err: BaseException) -> None:
    """A refusal must be a molsym error; an InputError names where (source or record)."""
    assert isinstance(err, MolsymError), f"bare {type(err).__name__}: {err}"
    if isinstance(err, InputError):
        assert err.source is not None or err.record is not None, str(err)


def assert_finite_atoms(atoms: ase.Atoms) -> None:
    assert len(atoms) > 0
    assert np.isfinite(atoms.positions).all()
    assert (atoms.numbers > 0).all() and (atoms.numbers <= 118).all()


def examples(n: int) -> settings:
    """``n`` examples in the default profile, scaled with the loaded profile's max_examples
    (``slow``: 40x), so that a per-test count does not pin the slow profile down."""
    return settings(max_examples=max(1, round(n * settings.default.max_examples / 25)))
