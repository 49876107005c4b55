import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from molsym.data.datamodule import MolDataModule
from molsym.data.statistics import compute_statistics
from molsym.errors import ConfigError
from tests.data.frames import make_frames as shared_frames

NAMES = ["CH3CH2OH", "H2O", "CH4", "NH3", "CH3OH", "HCN"]
RMD17 = Path(__file__).resolve().parents[3] / "shared" / "data" / "rmd17"


def make_frames(n, seed=0):
    return shared_frames(n, seed, NAMES)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.extxyz"
    ase.io.write(path, make_frames(40))
    test_path = tmp_path / "test.extxyz"
    ase.io.write(test_path, make_frames(9, seed=1))
    return path, test_path, tmp_path / "cache"


def test_end_to_end_splits_and_batches(data):
    path, _, cache = data
    dm = MolDataModule(str(path), cutoff=4.0, num_train=30, num_val=4, num_test=6,
                       batch_size=8, cache_dir=str(cache))
    dm.setup("fit")
    assert [len(dm.datasets[k]) for k in ("train", "val", "test")] == [30, 4, 6]
    ids = [set(g.id for g in dm.datasets[k]) for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    n_atoms = 0
    for batch in dm.train_dataloader():
        assert batch.pos.dtype == torch.float32 and batch.energy.shape == (batch.num_graphs,)
        assert batch.forces.shape == batch.pos.shape
        assert int(batch.edge_index.max()) < batch.num_nodes
        n_atoms += batch.num_nodes
    # CPU batches go to the CPU as they are (no walk over their fields)
    assert dm.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    assert n_atoms == sum(g.num_nodes for g in dm.datasets["train"])
    assert sum(b.num_graphs for b in dm.val_dataloader()) == 4
    assert sum(b.num_graphs for b in dm.test_dataloader()) == 6
    assert sum(b.num_graphs for b in dm.predict_dataloader()) == 6


def test_shuffle_and_split_are_deterministic(data, tmp_path):
    path, _, cache = data

    def run(seed):
        dm = MolDataModule(str(path), num_val=5, num_test=5, seed=seed, batch_size=7,
                           cache_dir=str(cache))
        dm.setup()
        loader = dm.train_dataloader()
        epochs = [[i for b in loader for i in b.id] for _ in range(2)]
        assert epochs[0] != epochs[1]  # reshuffled every epoch
        return dm.splits.train, epochs

    assert run(0) == run(0)
    assert run(0)[0] != run(1)[0]


def test_statistics_use_training_split_only(data):
    path, _, cache = data
    dm = MolDataModule(str(path), num_train=20, num_val=10, num_test=10, cache_dir=str(cache),
                       dtype="float64")
    stats = dm.statistics()
    ref = compute_statistics(dm.datasets["train"].graphs)
    assert stats.to_dict() == ref.to_dict() and stats.num_graphs == 20
    everything = compute_statistics([g for k in ("train", "val", "test")
                                     for g in dm.datasets[k]])
    assert stats.target_mean["energy"] != everything.target_mean["energy"]
    json.dumps(stats.to_dict())


def test_save_splits_reproduces_run(data, tmp_path):
    path, _, cache = data
    dm = MolDataModule(str(path), num_train=25, num_val=5, seed=11, cache_dir=str(cache))
    dm.save_splits(tmp_path / "splits.json")
    again = MolDataModule(str(path), split_file=str(tmp_path / "splits.json"),
                          cache_dir=str(cache))
    again.setup()
    assert again.splits == dm.splits
    for k in ("train", "val", "test"):
        assert [g.id for g in again.datasets[k]] == [g.id for g in dm.datasets[k]]


def test_separate_test_file(data):
    path, test_path, cache = data
    dm = MolDataModule(str(path), test_path=str(test_path), num_train=35, num_val=5,
                       cache_dir=str(cache))
    dm.setup()
    assert [len(dm.datasets[k]) for k in ("train", "val", "test")] == [35, 5, 9]
    assert all(str(test_path) in g.id for g in dm.datasets["test"])
    assert dm.splits.test_source == "test_path"


def test_targets_keep_and_require(data, tmp_path):
    path, _, cache = data
    dm = MolDataModule(str(path), targets=["energy"], cache_dir=str(cache))
    dm.setup()
    g = dm.datasets["train"][0]
    assert "energy" in g and "forces" not in g
    frames = make_frames(6)
    for atoms in frames[:3]:
        atoms.calc = None  # no labels at all
    partial = tmp_path / "partial.extxyz"
    ase.io.write(partial, frames)
    with pytest.raises(ConfigError, match="'energy' missing"):
        MolDataModule(str(partial), targets=["energy"], cache_dir=str(cache)).setup()


def test_config_errors(data, tmp_path):
    path, _, cache = data
    with pytest.raises(ConfigError, match="not found"):
        MolDataModule(str(tmp_path / "missing.xyz"), cache_dir=str(cache)).setup()
    with pytest.raises(ConfigError, match="44 > 40"):
        MolDataModule(str(path), num_train=39, num_val=5, cache_dir=str(cache)).setup()
    bad = tmp_path / "bad_split.json"
    bad.write_text(json.dumps({"train": [0, 1, 99], "val": [2]}))
    with pytest.raises(ConfigError, match="out of range"):
        MolDataModule(str(path), split_file=str(bad), cache_dir=str(cache)).setup()


def test_hydra_instantiate_and_lightning_fit(data):
    """Hydra builds the module from a _target_ config; a real Lightning fit consumes it."""
    path, _, cache = data
    cfg = OmegaConf.create({
        "_target_": "molsym.data.datamodule.MolDataModule", "path": str(path),
        "cutoff": 3.0, "num_val": 0.1, "batch_size": 8, "cache_dir": str(cache),
        "reader_options": {"energy_key": "energy"}, "targets": ["energy", "forces"],
    })
    dm = instantiate(cfg)
    assert isinstance(dm, MolDataModule) and dm.cutoff == 3.0
    assert type(dm.reader_options) is dict and dm.targets == ["energy", "forces"]

    class PerElementEnergy(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.e0 = torch.nn.Embedding(10, 1)
            torch.nn.init.zeros_(self.e0.weight)

        def _loss(self, batch):
            per_atom = self.e0(batch.z).squeeze(-1)
            energy = torch.zeros(batch.num_graphs).index_add(0, batch.batch, per_atom)
            return ((energy - batch.energy) ** 2).mean()

        def training_step(self, batch, _):
            return self._loss(batch)

        def validation_step(self, batch, _):
            self.log("val_loss", self._loss(batch), batch_size=batch.num_graphs)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.1)

    model = PerElementEnergy()
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert np.isfinite(trainer.callback_metrics["val_loss"].item())


@pytest.mark.skipif(not RMD17.is_dir(), reason="reference data ../shared/data/rmd17 absent")
def test_rmd17_protocol(tmp_path):
    readers = pytest.importorskip("molsym.data.readers")
    if not hasattr(readers, "read_file"):
        pytest.skip("molsym.data.readers.read_file not available yet")
    dm = MolDataModule(str(RMD17 / "rmd17_ethanol_train_01.npz"),
                       test_path=str(RMD17 / "rmd17_ethanol_test_01.npz"),
                       num_train=950, num_val=50, cache_dir=str(tmp_path))
    dm.setup()
    assert [len(dm.datasets[k]) for k in ("train", "val", "test")] == [950, 50, 1000]
    stats = dm.statistics()
    assert stats.elements == [1, 6, 8] and 0.1 < stats.forces_rms < 10  # eV/A
    assert stats.avg_num_neighbors == pytest.approx(8.0)  # 9 atoms, all within 5 A


def test_isolated_atom_energies_and_float64(data, tmp_path):
    path, _, cache = data
    iso_path = tmp_path / "iso.xyz"
    iso = {1: -13.6, 6: -1029.5, 7: -1485.0, 8: -2042.0}
    frames = []
    for z, e in iso.items():
        atoms = ase.Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atoms.info["energy"] = e
        frames.append(atoms)
    ase.io.write(iso_path, frames, format="extxyz")
    dm = MolDataModule(str(path), isolated_atom_energies_path=str(iso_path), dtype="float64",
                       cache_dir=str(cache))
    stats = dm.statistics()
    assert stats.atomic_energies == [iso[z] for z in stats.elements]
    assert next(iter(dm.val_dataloader())).pos.dtype == torch.float64


@pytest.mark.parametrize("targets", [None, ["energy", "forces"]])
def test_batches_keep_paired_edges_so_training_takes_the_paired_path(data, targets):
    """Every structure field survives the label selection (pair_index was dropped once, so
    every training run searched pairs or ran the radial network on every edge)."""
    from molsym import keys
    from molsym.models import EquivariantModel, predict_batch

    path, _, cache = data
    dm = MolDataModule(str(path), cutoff=4.0, num_train=30, num_val=4, num_test=6,
                       batch_size=8, cache_dir=str(cache), targets=targets)
    batch = next(iter(dm.train_dataloader()))
    assert keys.PAIR_INDEX in batch
    assert 2 * batch[keys.PAIR_INDEX].shape[1] == batch[keys.EDGE_INDEX].shape[1]
    model = EquivariantModel(cutoff=4.0, elements=[1, 6, 7, 8], num_channels=8, l_max=1)
    seen = {}
    original = model.forward

    def spy(*args, **kwargs):
        seen["paired"] = kwargs.get("paired_edges")
        return original(*args, **kwargs)

    model.forward = spy
    predict_batch(model, batch)
    assert seen["paired"] is True
