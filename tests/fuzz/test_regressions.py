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


def test_atoms_far_out_along_a_non_periodic_direction():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 5e16]], cell=np.eye(3) * 6.0,
                      pbc=[True, True, False])
    with pytest.raises(InputError, match="elongated"):
        atoms_to_graph(atoms, 4.0, source="f.extxyz", record=0)


def test_cell_entries_near_the_float_limit():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], pbc=True)
    atoms.cell.array[:] = [[1e-220, 6e-8, 1e141], [6e16, -2e275, 3e16], [-2e232, -2e16, 3e-33]]
    with pytest.raises(InputError, match="cell"):
        atoms_to_graph(atoms, 4.0, source="f.extxyz", record=0)


def test_huge_skewed_cell_with_one_periodic_direction():
    atoms = ase.Atoms("H3", positions=[[0.12, 0, 0], [-2.39, 0, -5.08], [0.5, -0.35, 0]],
                      pbc=[False, False, True])
    atoms.cell.array[:] = [[0, 5e4, -6.7378e16], [-1.4398e16, 0, 0], [-5.8482e16, 0, 4.7202e15]]
    with pytest.raises(InputError, match="elongated"):
        atoms_to_graph(atoms, 4.0, source="f.extxyz", record=0)


def test_coordinates_near_the_float_limit_in_a_periodic_structure():
    atoms = ase.Atoms("H3", positions=[[6e16, 0, 1.7e308]] * 3, pbc=[False, True, False],
                      cell=[[6.5, 0, 0], [-5.2, 9.7, 0], [1.3, 2.7, 2.8]])
    with pytest.raises(InputError, match="elongated"):
        atoms_to_graph(atoms, 4.0, source="f.extxyz", record=0)


def test_large_isotropic_cell_still_works():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=np.eye(3) * 1e4, pbc=True)
    assert atoms_to_graph(atoms, 4.0).edge_index.shape[1] == 2


@pytest.mark.parametrize("key, value", [("avg_num_neighbors", 0), ("atomic_energies", [])])
def test_model_file_with_a_config_the_constructor_rejects(tmp_path, key, value):
    """Was a bare ZeroDivisionError / a ConfigError not naming the file."""
    import torch

    from molsym.deploy import load_model, save_model
    from molsym.errors import ConfigError
    from tests.inference.conftest import small_model

    path = tmp_path / "model.pt"
    save_model(small_model(), path)
    payload = torch.load(path, weights_only=True)
    payload["config"][key] = value
    torch.save(payload, path)
    with pytest.raises(ConfigError, match="cannot rebuild") as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("smiles", ["*", "C*", "[*]CC"])
def test_dummy_atom_smiles_is_an_input_error(smiles):
    """Was a structure with atomic number 0 (the reader's output had no element)."""
    from molsym.data.readers import read_smiles

    with pytest.raises(InputError, match="dummy atom") as info:
        read_smiles(["CCO", smiles], embed_timeout=None)
    assert info.value.record == 1
