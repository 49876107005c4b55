"""``short_range_repulsion``: the ZBL prior tends to the bare Coulomb repulsion of the nuclei,
vanishes smoothly at the covalent distance, adds exactly its pair energy to the learned one,
gives conservative forces, and runs the same in every path (committee, compiled, old files)."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.data import covalent_radii
from torch_geometric.data import Batch

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.deploy.export import INPUT_NAMES, export_model, load_artifact
from molsym.deploy.model_file import load_model, read_model_file, save_model
from molsym.errors import ConfigError
from molsym.models import EnsembleModel, EquivariantModel, InvariantModel, predict_batch
from molsym.models.compiled import compile_model
from molsym.nn.repulsion import ZBLRepulsion, zbl_energy

ELEMENTS = [1, 6, 8]


def _model(cls=EquivariantModel, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(cutoff=4.0, elements=ELEMENTS, num_channels=8, radial_hidden=16,
               energy_scale=0.7, **kw).double().eval()


def _graph(atoms):
    return Batch.from_data_list([atoms_to_graph(atoms, 4.0, dtype=torch.float64)])


def _dimer(a, b, r):
    return Atoms(a + b, positions=[[0, 0, 0], [r, 0, 0]])


def test_zbl_is_the_screened_coulomb_repulsion_of_the_nuclei():
    r = torch.tensor([0.05, 0.1, 0.3, 1.0, 3.0], dtype=torch.float64)
    z = torch.full((5,), 8)
    screening = zbl_energy(r, z, z) * r / (units.Hartree * units.Bohr * 64)
    assert bool((screening > 0).all()) and bool((screening < 1).all())
    assert bool((screening.diff() < 0).all())  # more screened the farther apart
    assert float(screening[0]) > 0.6  # near bare Coulomb at 0.05 A
    # the screening function phi(x) -> 1 at x = 0 (its coefficients sum to 1)
    x = float(r[0]) * 2 * 8**0.23 / 0.46850
    phi = sum(c * math.exp(-e * x) for c, e in ((0.18175, 3.19980), (0.50986, 0.94229),
                                                 (0.28022, 0.40290), (0.02817, 0.20162)))
    assert float(screening[0]) == pytest.approx(phi, rel=1e-12)
    # closer than MIN_DISTANCE: the value there (finite, no division by zero)
    zero = zbl_energy(torch.zeros(1, dtype=torch.float64), z[:1], z[:1])
    assert float(zero) == pytest.approx(float(zbl_energy(r[:1], z[:1], z[:1])))


@pytest.mark.parametrize("pair", [("H", "H"), ("C", "H"), ("O", "O"), ("C", "O")])
def test_prior_is_repulsive_inside_and_exactly_zero_beyond_the_covalent_distance(pair):
    numbers = {"H": 1, "C": 6, "O": 8}
    index = {z: k for k, z in enumerate(ELEMENTS)}
    za, zb = numbers[pair[0]], numbers[pair[1]]
    reach = covalent_radii[za] + covalent_radii[zb]
    prior = ZBLRepulsion(ELEMENTS).double()
    species = torch.tensor([index[za], index[zb]])
    edges = torch.tensor([[0, 1], [1, 0]])
    r = torch.linspace(0.1, 1.5 * reach, 400, dtype=torch.float64, requires_grad=True)

    def pair_energy(d):
        return torch.stack([prior(species, torch.stack([x, x]), edges).sum() for x in d])

    e = pair_energy(r)
    (de,) = torch.autograd.grad(e.sum(), r)
    inside = r.detach() < reach
    assert bool((e[inside] > 0).all()) and bool((de[inside] < 0).all())  # repulsive, monotone
    assert bool((e[~inside] == 0).all()) and bool((de[~inside] == 0).all())
    near = torch.tensor([reach * (1 - 1e-3)], dtype=torch.float64)
    assert float(pair_energy(near).detach()) < 1e-6 * float(e[0])  # a smooth switch


def test_model_energy_is_the_learned_one_plus_the_pair_prior():
    plain, prior = _model(), _model(short_range_repulsion=True)
    prior.load_state_dict(plain.state_dict())  # the prior adds no weights

    def extra(atoms):
        g = _graph(atoms)
        return float(predict_batch(prior, g)[keys.ENERGY] - predict_batch(plain, g)[keys.ENERGY])

    z8 = torch.tensor([8])
    r = torch.tensor([0.6], dtype=torch.float64)
    switch = ZBLRepulsion(ELEMENTS).double().switch(r / (2 * covalent_radii[8]))
    expected = float(zbl_energy(r, z8, z8) * switch)
    assert expected > 10.0  # eV: a wall where issue 19's O-O curve had a hole
    assert extra(_dimer("O", "O", 0.6)) == pytest.approx(expected, rel=1e-10)
    # at equilibrium (ethanol: O-H 0.97 A against r_cov(O) + r_cov(H) = 0.97 A) ~ nothing
    assert 0.0 <= extra(molecule("CH3CH2OH")) < 1e-3


@pytest.mark.parametrize("cls", [EquivariantModel, InvariantModel])
def test_forces_with_the_prior_are_minus_the_energy_gradient(cls):
    model = _model(cls, short_range_repulsion=True)
    atoms = molecule("CH3CH2OH")
    atoms.positions[1] = atoms.positions[0] + [0.55, 0.2, 0.1]  # a C-C pair well inside
    forces = predict_batch(model, _graph(atoms))[keys.FORCES].numpy()
    h = 1e-5
    for atom, axis in ((0, 0), (1, 2), (3, 1)):
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            shifted.append(float(predict_batch(model, _graph(moved))[keys.ENERGY]))
        assert forces[atom, axis] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h),
                                                   rel=1e-6, abs=1e-6)


def test_prior_keeps_rotation_and_permutation_invariance():
    model = _model(short_range_repulsion=True)
    atoms = molecule("CH3CH2OH")
    atoms.positions[2] = atoms.positions[0] + [0.5, 0.0, 0.3]
    e = float(predict_batch(model, _graph(atoms))[keys.ENERGY])
    turned = atoms.copy()
    turned.rotate(73, (1, 2, 0.5), center="COM")
    order = np.random.default_rng(0).permutation(len(atoms))
    for other in (turned, atoms[order]):
        assert float(predict_batch(model, _graph(other))[keys.ENERGY]) == pytest.approx(
            e, rel=1e-10)


def test_committee_and_compiled_paths_add_the_same_prior():
    members = [_model(seed=s, short_range_repulsion=True) for s in (1, 2)]
    committee = EnsembleModel.from_models(members).double().eval()
    g = _graph(_dimer("C", "O", 0.7))
    stacked = predict_batch(committee, g)[keys.ENERGY]
    mean = sum(predict_batch(m, g)[keys.ENERGY] for m in members) / 2
    torch.testing.assert_close(stacked, mean)
    compiled = compile_model(members[0])
    out = compiled(g.z, g.pos, g.edge_index, g.batch, 1)
    torch.testing.assert_close(out[keys.ENERGY], predict_batch(members[0], g)[keys.ENERGY])
    assert math.isfinite(float(out[keys.FORCES].abs().max()))


def test_files_saved_before_the_option_load_without_it(tmp_path):
    model = _model()
    path = save_model(model, tmp_path / "old.pt")
    payload = read_model_file(path)
    del payload["config"]["short_range_repulsion"]  # as written before the option existed
    torch.save(payload, path)
    loaded = load_model(path, dtype="float64")
    assert loaded.repulsion is None
    g = _graph(_dimer("O", "O", 0.6))
    torch.testing.assert_close(predict_batch(loaded, g)[keys.ENERGY],
                               predict_batch(model, g)[keys.ENERGY])


def test_exported_program_keeps_the_prior(tmp_path):
    model = _model(short_range_repulsion=True)
    path = tmp_path / "model.pt2"
    export_model(model, path, dtype=torch.float64)  # checks itself against the model
    run, _ = load_artifact(path)
    g = _graph(_dimer("O", "O", 0.6))
    with torch.no_grad():
        out = dict(run(*(g[name] for name in INPUT_NAMES)))
    torch.testing.assert_close(out[keys.ENERGY], predict_batch(model, g)[keys.ENERGY])


def test_reach_moves_the_end_of_the_wall():
    prior = ZBLRepulsion(ELEMENTS, reach=0.7).double()
    species, edges = torch.tensor([2, 0]), torch.tensor([[0, 1], [1, 0]])  # O-H
    end = 0.7 * (covalent_radii[8] + covalent_radii[1])
    for r, inside in ((end * 0.99, True), (end * 1.01, False), (0.97, False)):
        d = torch.tensor([r, r], dtype=torch.float64)
        assert (float(prior(species, d, edges).sum()) > 0) == inside
    with pytest.raises(ConfigError, match="repulsion_reach"):
        _model(short_range_repulsion=True, repulsion_reach=0.0)
