import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from molsym.data.graph import atoms_to_graph, neighbour_list
from molsym.errors import InputError


def brute_force_pairs(pos, cell, pbc, cutoff):
    """O(N^2 * images) reference: set of (i, j, shift) with |r_ij| < cutoff."""
    reps = [range(-3, 4) if p else range(0, 1) for p in pbc]
    pairs = set()
    for i, j in itertools.product(range(len(pos)), repeat=2):
        for s in itertools.product(*reps):
            if i == j and s == (0, 0, 0):
                continue
            d = pos[j] - pos[i] + np.asarray(s) @ cell
            if np.linalg.norm(d) < cutoff:
                pairs.add((i, j, s))
    return pairs


def as_set(edge_index, shifts):
    rows = zip(edge_index.T, shifts, strict=True)
    return {(int(i), int(j), tuple(int(x) for x in s)) for (i, j), s in rows}


@pytest.mark.parametrize("cutoff", [1.2, 2.5, 5.0])
def test_neighbour_list_matches_brute_force_molecule(cutoff):
    atoms = molecule("CH3CH2OH")
    ei, sh, dist = neighbour_list(atoms.positions, cutoff)
    assert as_set(ei, sh) == brute_force_pairs(atoms.positions, np.zeros((3, 3)), [0, 0, 0], cutoff)
    vec = atoms.positions[ei[1]] - atoms.positions[ei[0]]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), dist)


@pytest.mark.parametrize("num_atoms", [20, 150])  # dense numpy path and vesin path
def test_neighbour_list_matches_brute_force_cluster(num_atoms):
    pos = np.random.default_rng(1).uniform(0, 12, size=(num_atoms, 3))
    ei, sh, dist = neighbour_list(pos, 3.0)
    assert as_set(ei, sh) == brute_force_pairs(pos, np.zeros((3, 3)), [0, 0, 0], 3.0)
    assert np.all(np.diff(ei[0]) >= 0)  # sorted by centre atom


def test_graph_does_not_share_memory_with_atoms():
    atoms = molecule("H2O")
    g = atoms_to_graph(atoms, cutoff=3.0, dtype=torch.float64)
    atoms.positions[0] += 1.0
    assert not torch.allclose(g.pos[0], torch.as_tensor(atoms.positions[0]))


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True)])
def test_neighbour_list_matches_brute_force_periodic(pbc):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.pbc = pbc
    cutoff = 3.0
    ei, sh, dist = neighbour_list(atoms.positions, cutoff, atoms.cell[:], np.array(pbc))
    ref = brute_force_pairs(atoms.positions, atoms.cell[:], pbc, cutoff)
    assert as_set(ei, sh) == ref
    vec = atoms.positions[ei[1]] - atoms.positions[ei[0]] + sh @ atoms.cell[:]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), dist)


def test_lattice_without_pbc_is_not_periodic():
    atoms = molecule("H2O")
    atoms.cell = np.eye(3) * 2.0  # small cell; images would be within the cutoff if periodic
    atoms.pbc = False
    g = atoms_to_graph(atoms, cutoff=5.0)
    assert g.edge_index.shape[1] == 6
    assert torch.all(g.cell_shifts == 0)
    assert not g.pbc.any()


def test_graph_fields_and_labels():
    atoms = molecule("CH4")
    atoms.info["energy"] = -1.5
    atoms.info["homo"] = -7.0
    atoms.info["dipole"] = np.array([0.1, 0.2, 0.3])
    atoms.arrays["forces"] = np.arange(15.0).reshape(5, 3)
    g = atoms_to_graph(atoms, cutoff=3.0, dtype=torch.float64)
    assert g.z.tolist() == [6, 1, 1, 1, 1]
    assert g.pos.dtype == torch.float64 and g.pos.shape == (5, 3)
    assert g.energy.shape == (1,) and g.homo.item() == -7.0
    assert g.dipole.shape == (1, 3)
    assert torch.equal(g.forces, torch.arange(15.0, dtype=torch.float64).reshape(5, 3))
    # every pair within 3 Angstrom, both directions
    assert g.edge_index.shape[1] == 20


def test_no_neighbour_cap_dense_cluster():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 4, size=(60, 3))
    atoms = Atoms("C60", positions=pos)
    try:
        g = atoms_to_graph(atoms, cutoff=10.0)
    except InputError:
        pytest.skip("random cluster has a too-close pair")
    assert g.edge_index.shape[1] == 60 * 59


@pytest.mark.parametrize(
    "bad, match",
    [
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.05]]), "Angstrom apart"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, np.nan]]), "non-finite"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, np.inf]]), "non-finite"),
        (Atoms(), "no atoms"),
    ],
)
def test_bad_structures_raise_input_error_naming_record(bad, match):
    with pytest.raises(InputError, match=match) as exc:
        atoms_to_graph(bad, cutoff=5.0, source="mols.xyz", record=3)
    assert "mols.xyz" in str(exc.value) and "3" in str(exc.value)
