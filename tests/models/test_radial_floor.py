"""``radial_floor``: the radial network sees no pair closer than a fraction of the closest
training distance of its elements, so the learned energy of a pair pushed closer stays flat
(no hole) while the ZBL prior rises; the lengths it sees are the true ones above the floor;
forces stay conservative; every path (committee, chunked, compiled, exported, saved file)
applies the same floor; the statistics find the closest pairs, periodic images included."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.data import covalent_radii
from torch_geometric.data import Batch

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.data.statistics import compute_statistics
from molsym.deploy.export import INPUT_NAMES, export_model, load_artifact
from molsym.deploy.model_file import load_model, save_model
from molsym.errors import ConfigError
from molsym.models import EnsembleModel, EquivariantModel, InvariantModel, predict_batch
from molsym.models.compiled import compile_model
from molsym.nn.radial import DistanceFloor, pair_key
from molsym.training.finetune import closest_of_both

ELEMENTS = [1, 6, 8]
CUTOFF = 4.0
#: closest training distances (Angstrom) as an ethanol MD set gives them (no O-O pair)
CLOSEST = {"1-1": 1.45, "1-6": 0.98, "1-8": 0.88, "6-6": 1.42, "6-8": 1.33}


def _model(cls=EquivariantModel, seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"radial_floor": 0.8, "closest_pairs": CLOSEST, **kw}
    return cls(cutoff=CUTOFF, elements=ELEMENTS, num_channels=8, radial_hidden=16,
               energy_scale=0.7, **kw).double().eval()


def _graph(*frames):
    return Batch.from_data_list([atoms_to_graph(a, CUTOFF, dtype=torch.float64)
                                 for a in frames])


def _dimer(a, b, r):
    return Atoms(a + b, positions=[[0, 0, 0], [r, 0, 0]])


def _energies(model, frames):
    return predict_batch(model, _graph(*frames))[keys.ENERGY].numpy()


def test_lengths_are_unchanged_above_the_floor_and_tend_to_it_below():
    floor = DistanceFloor(ELEMENTS, {"1-1": 1.5}, 0.8).double()
    h = torch.tensor([0, 0])
    f = 1.2  # 0.8 x 1.5
    far = torch.tensor([f + 20 * floor.SOFTNESS + 0.01, 3.0], dtype=torch.float64)
    assert torch.equal(floor(far, h[:2], h[:2]), far)  # exactly r beyond f + 20 w
    near = torch.tensor([f + 0.3], dtype=torch.float64)
    w = floor.SOFTNESS  # 0.3 A above: raised by w log(1 + e^(-0.3 / w)), 0.12 mA
    assert float(floor(near, h[:1], h[:1])) == pytest.approx(f + 0.3 + w * np.log1p(
        np.exp(-0.3 / w)), rel=1e-12)
    r = torch.linspace(0.05, 3.0, 300, dtype=torch.float64, requires_grad=True)
    seen = floor(r, torch.zeros(300, dtype=torch.long), torch.zeros(300, dtype=torch.long))
    slope, = torch.autograd.grad(seen.sum(), r)
    assert bool((seen >= f).all()) and bool((seen >= r - 1e-12).all())
    assert bool((slope > 0).all()) and bool((slope <= 1).all())  # smooth, monotone
    assert float(seen[0].detach()) == pytest.approx(f, abs=1e-9)  # far below: the floor itself


def test_floors_are_the_fraction_of_the_closest_pair_else_the_covalent_distance():
    floor = DistanceFloor(ELEMENTS, CLOSEST, 0.8).floor
    o, h = ELEMENTS.index(8), ELEMENTS.index(1)
    assert float(floor[h, o]) == float(floor[o, h]) == pytest.approx(0.8 * 0.88)
    assert float(floor[o, o]) == pytest.approx(2 * covalent_radii[8])  # never seen
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ConfigError, match="radial_floor"):
            DistanceFloor(ELEMENTS, CLOSEST, bad)
    with pytest.raises(ConfigError, match="closest_pairs"):
        EquivariantModel(cutoff=CUTOFF, elements=ELEMENTS, radial_floor=0.8)


@pytest.mark.parametrize("pair", [("H", "H"), ("O", "O"), ("C", "H")])
def test_a_pair_pushed_inside_its_floor_has_a_flat_learned_energy_and_a_rising_total(pair):
    key = pair_key(*_dimer(*pair, 1.0).numbers)
    f = 0.8 * CLOSEST[key] if key in CLOSEST else 2 * covalent_radii[8]  # O-O: never seen
    inside = np.linspace(0.15, f - 0.6, 12)
    learned = _energies(_model(), [_dimer(*pair, r) for r in inside])
    np.testing.assert_allclose(learned, learned[0], atol=1e-6 * max(1.0, abs(learned[0])))
    # without the floor, the same weights change the energy there (the extrapolation)
    bare = _energies(_model(radial_floor=0.0), [_dimer(*pair, r) for r in inside])
    assert np.ptp(bare) > 100 * np.ptp(learned)
    # with the ZBL prior the energy only rises as the atoms meet
    total = _energies(_model(short_range_repulsion=True, repulsion_reach=0.7),
                      [_dimer(*pair, r) for r in inside])
    assert bool((np.diff(total) < 0).all())


def test_models_agree_exactly_where_every_pair_lies_well_above_its_floor():
    atoms = molecule("CH3CH2OH")
    low = {pair_key(a, b): 0.1 for a in ELEMENTS for b in ELEMENTS}  # floors of 0.08 A
    floored, plain = _model(closest_pairs=low), _model(radial_floor=0.0)
    out_f, out_p = predict_batch(floored, _graph(atoms)), predict_batch(plain, _graph(atoms))
    for key in (keys.ENERGY, keys.FORCES):  # f + w (r - f) / w: r to rounding
        torch.testing.assert_close(out_f[key], out_p[key], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", [EquivariantModel, InvariantModel])
def test_forces_across_the_floor_are_minus_the_energy_gradient(cls):
    model = _model(cls)
    atoms = molecule("CH3CH2OH")
    h_atom = next(i for i, z in enumerate(atoms.numbers) if z == 1)
    c_atom = next(i for i, z in enumerate(atoms.numbers) if z == 6)
    direction = atoms.positions[h_atom] - atoms.positions[c_atom]
    # the C-H pair right at its floor (0.8 x 0.98 A), where the step is bending
    atoms.positions[h_atom] = atoms.positions[c_atom] + 0.79 * direction / np.linalg.norm(
        direction)
    forces = predict_batch(model, _graph(atoms))[keys.FORCES].numpy()
    step = 1e-5
    for atom, axis in ((h_atom, 0), (h_atom, 2), (c_atom, 1)):
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * step
            shifted.append(float(_energies(model, [moved])[0]))
        assert forces[atom, axis] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * step),
                                                   rel=1e-6, abs=1e-7)


def test_floor_keeps_rotation_and_permutation_invariance():
    model = _model()
    atoms = molecule("CH3CH2OH")
    atoms.positions[2] = atoms.positions[0] + [0.5, 0.0, 0.3]  # a pair inside its floor
    e = float(_energies(model, [atoms])[0])
    turned = atoms.copy()
    turned.rotate(73, (1, 2, 0.5), center="COM")
    turned.positions += [3.0, -1.0, 0.5]
    order = np.random.default_rng(0).permutation(len(atoms))
    for other in (turned, atoms[order]):
        assert float(_energies(model, [other])[0]) == pytest.approx(e, rel=1e-10)


def test_committee_chunked_compiled_and_exported_paths_apply_the_same_floor(tmp_path):
    members = [_model(seed=s) for s in (1, 2)]
    atoms = molecule("CH3CH2OH")
    atoms.positions[1] = atoms.positions[0] + [0.6, 0.2, 0.1]  # C-C well inside its floor
    g = _graph(atoms)
    eager = predict_batch(members[0], g)
    committee = EnsembleModel.from_models(members).double().eval()
    mean = sum(predict_batch(m, g)[keys.ENERGY] for m in members) / 2
    torch.testing.assert_close(predict_batch(committee, g)[keys.ENERGY], mean)
    chunked = _model(seed=1)
    chunked.chunk_above, chunked.edge_chunk = 1, 8
    torch.testing.assert_close(predict_batch(chunked, g)[keys.FORCES], eager[keys.FORCES])
    compiled = compile_model(members[0])
    out = compiled(g.z, g.pos, g.edge_index, g.batch, 1)
    torch.testing.assert_close(out[keys.ENERGY], eager[keys.ENERGY])
    path = tmp_path / "model.pt2"
    export_model(members[0], path, dtype=torch.float64)  # checks itself against the model
    run, _ = load_artifact(path)
    with torch.no_grad():
        exported = dict(run(*(g[name] for name in INPUT_NAMES)))
    torch.testing.assert_close(exported[keys.ENERGY], eager[keys.ENERGY])


def test_saved_file_keeps_the_floor_and_old_files_load_without_it(tmp_path):
    model = _model()
    g = _graph(_dimer("H", "H", 0.5))
    loaded = load_model(save_model(model, tmp_path / "m.pt"), dtype="float64")
    assert loaded.config()["closest_pairs"] == CLOSEST
    torch.testing.assert_close(predict_batch(loaded, g)[keys.ENERGY],
                               predict_batch(model, g)[keys.ENERGY])
    old = model.config()
    del old["radial_floor"], old["closest_pairs"]  # as saved before the option
    assert EquivariantModel(**old).distance_floor is None


def test_statistics_find_the_closest_pair_of_each_element_pair_images_included():
    water = molecule("H2O")
    stretched = water.copy()
    stretched.positions[1] = stretched.positions[0] + 0.9 * (
        stretched.positions[1] - stretched.positions[0])
    d_oh = float(np.linalg.norm(stretched.positions[1] - stretched.positions[0]))
    d_hh = float(np.linalg.norm(water.positions[1] - water.positions[2]))
    stats = compute_statistics([atoms_to_graph(a, CUTOFF) for a in (water, stretched)])
    assert stats.closest_pairs["1-8"] == pytest.approx(d_oh, rel=1e-6)
    assert stats.closest_pairs["1-1"] == pytest.approx(min(d_hh, float(np.linalg.norm(
        stretched.positions[1] - stretched.positions[2]))), rel=1e-6)
    assert "8-8" not in stats.closest_pairs
    assert stats.to_dict()["closest_pairs"] == stats.closest_pairs
    # a periodic cell: the nearest C-C pair is between images, 1.3 A across the boundary
    chain = Atoms("CC", positions=[[0.2, 0, 0], [3.9, 0, 0]], cell=[5.0, 20.0, 20.0],
                  pbc=True)
    periodic = compute_statistics([atoms_to_graph(chain, CUTOFF)])
    assert periodic.closest_pairs["6-6"] == pytest.approx(1.3, rel=1e-6)


def test_finetune_floor_covers_the_pairs_of_both_data_sets():
    merged = closest_of_both({"1-1": 1.4, "1-8": 0.9}, {"1-8": 0.85, "8-8": 1.2})
    assert merged == {"1-1": 1.4, "1-8": 0.85, "8-8": 1.2}


def test_predictions_inside_the_floor_are_flagged_and_others_are_not(caplog):
    from molsym.inference.calculator import MolsymCalculator
    from molsym.inference.predictor import predict

    model = _model(short_range_repulsion=True)
    normal = molecule("CH3CH2OH")
    squeezed = normal.copy()
    h = next(i for i, z in enumerate(squeezed.numbers) if z == 1 and i > 2)
    squeezed.positions[h] = squeezed.positions[0] + [0.45, 0.2, 0.1]  # C-H 0.5 A, floor 0.78
    df = predict(model, [normal, squeezed])
    assert df["warning"][0] == ""
    assert "closer than in the training data" in df["warning"][1]
    assert "H-C 0.5" in df["warning"][1] and "O-" not in df["warning"][1]
    assert (df["error"] == "").all() and np.isfinite(df["energy_eV"]).all()  # still predicted
    plain = predict(_model(radial_floor=0.0), [squeezed])
    assert "closer than in the training data" not in plain["warning"][0]
    calc = MolsymCalculator(model)
    with caplog.at_level("WARNING"):
        for atoms in (normal, squeezed, squeezed.copy()):
            atoms.calc = calc
            atoms.get_potential_energy()
    flagged = [r for r in caplog.records if "closer than in the training data" in r.message]
    assert len(flagged) == 1  # once per calculator, not at every MD step
