import json

import ase
import ase.io
import numpy as np
import pytest
import torch

from molsym.data.graph import atoms_to_graph
from molsym.data.statistics import (
    DatasetStatistics,
    compute_statistics,
    read_isolated_atom_energies,
)
from molsym.errors import ConfigError

E0 = {1: -13.6, 6: -1029.5, 7: -1485.0, 8: -2042.0}


def random_structure(rng, n_atoms):
    """Atoms on a jittered grid (spacing 1.1 A), so no pair is closer than the graph minimum."""
    grid = np.array(np.meshgrid(*[np.arange(4)] * 3, indexing="ij")).reshape(3, -1).T * 1.1
    pos = grid[rng.choice(len(grid), n_atoms, replace=False)] + rng.uniform(-0.2, 0.2, (n_atoms, 3))
    z = rng.choice(list(E0), n_atoms)
    return ase.Atoms(numbers=z, positions=pos)


def synthetic_graphs(n=40, noise=0.0, seed=0, cutoff=2.5):
    rng = np.random.default_rng(seed)
    graphs, atoms_list = [], []
    for i in range(n):
        atoms = random_structure(rng, int(rng.integers(3, 12)))
        atoms.info["energy"] = sum(E0[int(z)] for z in atoms.numbers) + noise * rng.normal()
        atoms.info["homo"] = float(rng.normal(-6.0, 0.5))
        atoms.arrays["forces"] = rng.normal(0, 0.7, (len(atoms), 3))
        atoms.info["id"] = f"synthetic:{i}"
        atoms_list.append(atoms)
        graphs.append(atoms_to_graph(atoms, cutoff, dtype=torch.float64))
    return graphs, atoms_list


def test_least_squares_recovers_exact_per_element_energies():
    graphs, _ = synthetic_graphs()
    stats = compute_statistics(graphs)
    assert stats.elements == [1, 6, 7, 8]
    np.testing.assert_allclose(stats.atomic_energies, [E0[z] for z in stats.elements], atol=1e-8)
    assert stats.energy_residual_std == pytest.approx(0.0, abs=1e-8)


def test_statistics_match_direct_numpy():
    cutoff = 2.5
    graphs, atoms_list = synthetic_graphs(noise=0.3, seed=1, cutoff=cutoff)
    stats = compute_statistics(graphs)
    elements = sorted({int(z) for a in atoms_list for z in a.numbers})
    comp = np.array([[np.sum(a.numbers == z) for z in elements] for a in atoms_list])
    energies = np.array([a.info["energy"] for a in atoms_list])
    ref, *_ = np.linalg.lstsq(comp, energies, rcond=None)
    np.testing.assert_allclose(stats.atomic_energies, ref, rtol=1e-10)
    np.testing.assert_allclose(stats.energy_residual_std, np.std(energies - comp @ ref))
    # neighbours: direct O(N^2) count
    pairs = 0
    for a in atoms_list:
        d = np.linalg.norm(a.positions[:, None] - a.positions[None], axis=-1)
        pairs += np.sum((d < cutoff) & (d > 0))
    n_atoms = sum(len(a) for a in atoms_list)
    assert stats.avg_num_neighbors == pytest.approx(pairs / n_atoms)
    forces = np.concatenate([a.arrays["forces"] for a in atoms_list])
    assert stats.forces_rms == pytest.approx(np.sqrt(np.mean(forces**2)))
    homo = np.array([a.info["homo"] for a in atoms_list])
    assert stats.target_mean["homo"] == pytest.approx(homo.mean())
    assert stats.target_std["homo"] == pytest.approx(homo.std())
    assert stats.target_mean["energy"] == pytest.approx(energies.mean())
    assert stats.num_graphs == len(graphs) and stats.num_atoms == n_atoms


def test_to_dict_is_plain_json():
    graphs, _ = synthetic_graphs(n=10)
    d = compute_statistics(graphs).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert all(type(x) is float for x in d["atomic_energies"])
    assert type(d["avg_num_neighbors"]) is float and type(d["num_graphs"]) is int
    assert DatasetStatistics(**d).to_dict() == d


def test_isolated_atom_energies_from_file(tmp_path):
    path = tmp_path / "iso.xyz"
    frames = []
    for z, e in E0.items():
        atoms = ase.Atoms(numbers=[z], positions=[[0, 0, 0]])
        atoms.info["energy"] = e + 0.5  # differ from the fitted values on purpose
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    iso = read_isolated_atom_energies(path)
    assert iso == pytest.approx({z: e + 0.5 for z, e in E0.items()})
    graphs, _ = synthetic_graphs(n=10)
    stats = compute_statistics(graphs, isolated_atom_energies=iso)
    np.testing.assert_allclose(stats.atomic_energies, [E0[z] + 0.5 for z in stats.elements])
    with pytest.raises(ConfigError, match=r"\[8\]"):
        compute_statistics(graphs, isolated_atom_energies={k: v for k, v in iso.items() if k != 8})


def test_bad_isolated_atom_file(tmp_path):
    path = tmp_path / "iso.xyz"
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.info["energy"] = -1.0
    ase.io.write(path, [atoms], format="extxyz")
    with pytest.raises(ConfigError, match="one atom"):
        read_isolated_atom_energies(path)
    with pytest.raises(ConfigError, match="not found"):
        read_isolated_atom_energies(tmp_path / "missing.xyz")


def test_no_energy_no_forces_and_empty():
    water = ase.Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    graphs = [atoms_to_graph(water, 3.0)]
    stats = compute_statistics(graphs)
    assert stats.atomic_energies is None and stats.forces_rms is None
    assert stats.avg_num_neighbors == pytest.approx(2.0)
    with pytest.raises(ConfigError):
        compute_statistics([])
