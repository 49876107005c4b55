"""``exact_isolated_atoms``: a lone atom's energy is its element's shift, exactly, in every
path (eager, committee pass, eval-mode cache), and files saved before the option load
unchanged."""

import copy

import pytest
import torch
from ase import Atoms
from ase.build import molecule
from torch_geometric.data import Batch

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.deploy.model_file import load_model, read_model_file, save_model
from molsym.models import EnsembleModel, EquivariantModel, InvariantModel, predict_batch

SHIFTS = [-13.6, -1029.5, -2041.3]  # eV per H, C, O


def _model(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(cutoff=4.0, elements=[1, 6, 8], num_channels=8, radial_hidden=16,
               atomic_energies=SHIFTS, energy_scale=0.7, **kw).double().eval()


def _energy(model, atoms):
    graph = atoms_to_graph(atoms, model.cutoff, dtype=torch.float64)
    return predict_batch(model, Batch.from_data_list([graph]))[keys.ENERGY]


def _shift_sum(model, symbols):
    """The sum of ``model``'s shifts (float32 when built, so not exactly SHIFTS) over atoms."""
    index = {"H": 0, "C": 1, "O": 2}
    return sum(float(model.atomic_energy_shift[index[s]]) for s in symbols)


def _far_apart(symbols, spacing=10.0):
    return Atoms(symbols, positions=[[spacing * k, 0.0, 0.0] for k in range(len(symbols))])


@pytest.mark.parametrize("cls", [EquivariantModel, InvariantModel])
def test_atoms_without_neighbours_have_exactly_their_shifts(cls):
    model = _model(cls)
    assert float(_energy(model, _far_apart("HCOO"))) == pytest.approx(
        _shift_sum(model, "HCOO"), abs=1e-9)
    # the option changes only the energy zero of each element, never forces
    plain = _model(cls, exact_isolated_atoms=False)
    ethanol = molecule("CH3CH2OH")
    g = Batch.from_data_list([atoms_to_graph(ethanol, 4.0, dtype=torch.float64)])
    f_exact, f_plain = predict_batch(model, g)[keys.FORCES], predict_batch(plain, g)[keys.FORCES]
    torch.testing.assert_close(f_exact, f_plain)
    cpu = torch.device("cpu")
    lone = plain.isolated_node_energy(torch.float64, cpu) * plain.atomic_energy_scale
    shift = float((lone.detach() * torch.tensor([6.0, 2.0, 1.0], dtype=torch.float64)).sum())
    assert float(predict_batch(plain, g)[keys.ENERGY] - predict_batch(model, g)[keys.ENERGY]) \
        == pytest.approx(shift, abs=1e-9)


def test_the_eval_cache_follows_weight_updates():
    model = _model(EquivariantModel)
    ethanol = molecule("CH3CH2OH")
    before = _energy(model, ethanol)
    with torch.no_grad():
        model.embedding.weight.add_(0.3)  # in place: the cached lone-atom energies are stale
    after = _energy(model, ethanol)
    fresh = copy.deepcopy(model)
    fresh.__dict__.pop("_isolated_cache", None)
    assert float(after) != pytest.approx(float(before), abs=1e-6)
    torch.testing.assert_close(after, _energy(fresh, ethanol))
    assert float(_energy(model, _far_apart("CO"))) == pytest.approx(_shift_sum(model, "CO"),
                                                                       abs=1e-9)


def test_committee_pass_keeps_the_limit():
    committee = EnsembleModel.from_models([_model(EquivariantModel, seed=s) for s in (1, 2, 3)])
    committee = committee.double().eval()
    out = predict_batch(committee, Batch.from_data_list(
        [atoms_to_graph(_far_apart("HCO"), 4.0, dtype=torch.float64)]))
    assert float(out[keys.ENERGY]) == pytest.approx(
        _shift_sum(committee.members[0], "HCO"), abs=1e-9)
    assert float(out[keys.ENERGY + "_std"]) == pytest.approx(0.0, abs=1e-9)


def test_files_saved_before_the_option_load_without_it(tmp_path):
    model = _model(EquivariantModel, exact_isolated_atoms=False)
    path = save_model(model, tmp_path / "old.pt")
    payload = read_model_file(path)
    del payload["config"]["exact_isolated_atoms"]  # as written before the option existed
    torch.save(payload, path)
    loaded = load_model(path, dtype="float64")
    assert loaded.exact_isolated_atoms is False
    ethanol = molecule("CH3CH2OH")
    torch.testing.assert_close(_energy(loaded, ethanol), _energy(model, ethanol))
