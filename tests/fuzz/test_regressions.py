"""Bugs the fuzz suite found, pinned down."""

import ase
import numpy as np
import pytest

from molsym.data.graph import atoms_to_graph
from molsym.errors import InputError


@pytest.mark.parametrize("cell, pbc", [
    (np.diag([1e6, 5.0, 5.0]), True),              # vesin: SIGFPE (process killed)
    (np.diag([1e6, 5.0, 5.0]), [True, False, False]),
    (np.diag([1e5, 1e5, 2.0]), True),
    (np.diag([1e6, 0.0, 0.0]), [True, False, False]),
    (np.diag([np.nan, 5.0, 5.0]), True),           # NaN cell passed the degenerate check
    (np.diag([np.inf, 5.0, 5.0]), True),
])
def test_elongated_or_non_finite_cell_is_an_input_error(cell, pbc):
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], pbc=pbc)
    atoms.cell.array[:] = cell
    with pytest.raises(InputError, match="cell") as info:
        atoms_to_graph(atoms, 4.0, source="f.extxyz", record=3)
    assert info.value.record == 3


def test_large_isotropic_cell_still_works():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=np.eye(3) * 1e4, pbc=True)
    assert atoms_to_graph(atoms, 4.0).edge_index.shape[1] == 2
