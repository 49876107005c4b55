"""``collate_graphs`` builds the batch PyG's ``Batch.from_data_list`` builds, field by field,
for every kind of field molsym graphs carry, and the training loaders use it."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from torch_geometric.data import Batch

from molsym import keys
from molsym.data.collate import collate_graphs
from molsym.data.graph import atoms_to_graph
from molsym.models import EquivariantModel, predict_batch


def labelled(atoms, seed, **info):
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
    atoms.info.update({keys.ENERGY: float(rng.normal()), keys.DIPOLE: rng.normal(size=3),
                       "gap": float(rng.normal()), **info})
    atoms.arrays[keys.FORCES] = rng.normal(size=(len(atoms), 3))
    return atoms


def graphs(kinds):
    out = []
    for k, atoms in enumerate(kinds):
        graph = atoms_to_graph(labelled(atoms, k), 3.0, source="mix.extxyz", record=k)
        out.append(graph)
    return out


def assert_same_batch(ours, theirs):
    assert set(ours.keys()) == set(theirs.keys())
    for name in theirs.keys():
        a, b = ours[name], theirs[name]
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert torch.equal(a, b), name
        else:
            assert a == b, name
    assert ours.num_graphs == theirs.num_graphs and ours.num_nodes == theirs.num_nodes


@pytest.mark.parametrize("kinds", [
    [molecule("CH3CH2OH"), molecule("H2O"), molecule("C6H6")],
    [molecule("H2O")],
    [Atoms("H"), molecule("CH4"), Atoms("O")],  # graphs without edges
    [bulk("Cu", "fcc", a=3.6), molecule("CH4")],  # periodic beside molecular
])
def test_the_batch_is_pygs_field_by_field(kinds):
    data = graphs(kinds)
    assert_same_batch(collate_graphs(data), Batch.from_data_list(data))


def test_a_model_sees_the_same_batch():
    data = graphs([molecule("CH3CH2OH"), molecule("CH3OH"), molecule("HCOOH")])
    torch.manual_seed(0)
    model = EquivariantModel(cutoff=3.0, elements=[1, 6, 8], num_channels=8,
                             radial_hidden=8).double()
    ours = predict_batch(model, collate_graphs(data))
    theirs = predict_batch(model, Batch.from_data_list(data))
    for name in (keys.ENERGY, keys.FORCES):
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0)


def test_graphs_with_different_fields_go_through_pygs_collate():
    a, b = graphs([molecule("H2O"), molecule("CH4")])
    del b[keys.DIPOLE]
    try:
        theirs = Batch.from_data_list([a, b])
    except Exception as exc:  # noqa: BLE001 - whatever PyG raises, we raise the same
        with pytest.raises(type(exc)):
            collate_graphs([a, b])
    else:
        assert_same_batch(collate_graphs([a, b]), theirs)


def test_the_training_loader_collates_with_it(tmp_path):
    from molsym.data.datamodule import MolDataModule
    from tests.cli.cli_helpers import write_emt_frames

    path = write_emt_frames(tmp_path / "f.extxyz", n=12)
    dm = MolDataModule(path=str(path), cutoff=4.0, num_val=2, num_test=2, batch_size=4,
                       targets=[keys.ENERGY, keys.FORCES])
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.collate_fn is collate_graphs
    batch = next(iter(loader))
    assert keys.PAIR_INDEX in batch.keys() and batch.num_graphs == 4
    assert int(batch.pair_index.max()) < batch.num_nodes
