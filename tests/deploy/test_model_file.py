"""The deploy file: plain data, identical predictions after a round trip, allowlisted classes."""

import pickle

import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from molsym.data.graph import atoms_to_graph
from molsym.deploy import FORMAT_VERSION, load_model, read_model_file, save_model
from molsym.errors import ConfigError
from molsym.models import MODEL_CLASSES, EquivariantModel, InvariantModel, predict_batch


def _batch(cutoff, dtype=torch.float32):
    mols = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]
    for k, m in enumerate(mols):
        m.rattle(0.05, seed=k)
    return Batch.from_data_list([atoms_to_graph(m, cutoff, dtype=dtype) for m in mols])


@pytest.mark.parametrize("cls", [EquivariantModel, InvariantModel])
def test_round_trip_gives_identical_predictions(cls, tmp_path):
    torch.manual_seed(1)
    model = cls(cutoff=4.0, elements=[1, 6, 8], num_channels=8, num_layers=2,
                atomic_energies=[-13.6, -1029.0, -2041.0], avg_num_neighbors=5.0,
                outputs=["energy", "forces", "dipole"])
    with torch.no_grad():  # non-trivial, non-default weights everywhere
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(model, tmp_path / "model.pt", metadata={"note": "test"})
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["model_class"] == cls.model_name
    assert payload["elements"] == [1, 6, 8] and payload["cutoff"] == 4.0
    assert payload["units"]["forces"] == "eV/Angstrom" and payload["metadata"] == {"note": "test"}
    assert isinstance(payload["config"], dict) and isinstance(payload["state_dict"], dict)
    loaded = load_model(path)
    assert type(loaded) is cls and not loaded.training
    batch = _batch(4.0)
    model.eval()
    a = predict_batch(model, batch, compute_forces=True)
    b = predict_batch(loaded, batch, compute_forces=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    as64 = load_model(path, dtype="float64")
    c = predict_batch(as64, _batch(4.0, torch.float64), compute_forces=True)
    assert torch.allclose(c["energy"].float(), a["energy"], rtol=1e-5)


def test_float64_model_comes_back_float64_bit_identical(tmp_path):
    torch.manual_seed(2)
    model = EquivariantModel(cutoff=4.0, elements=[1, 6, 8], num_channels=8, num_layers=2,
                             atomic_energies=[-13.6, -1029.0, -2041.0]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-9 * torch.randn_like(p))  # below float32 resolution
    loaded = load_model(save_model(model, tmp_path / "m64.pt"))
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def _tampered(tmp_path, **changes):
    model = InvariantModel(cutoff=3.0, elements=[1, 8], num_channels=4, num_layers=1)
    path = save_model(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return path


def test_unknown_class_names_are_refused_not_imported(tmp_path):
    for name in ("os.system", "builtins.eval", "NotAModel", 42):
        with pytest.raises(ConfigError, match="unknown model class"):
            load_model(_tampered(tmp_path, model_class=name))
    assert "os.system" not in MODEL_CLASSES


def test_bad_files_give_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="format version"):
        load_model(_tampered(tmp_path, format_version=FORMAT_VERSION + 1))
    with pytest.raises(ConfigError, match="cannot rebuild"):
        load_model(_tampered(tmp_path, config={"cutoff": 3.0, "bogus_argument": 1}))
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ConfigError, match="not a molsym deploy file"):
        read_model_file(text)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format_version": 1, "model_class": "invariant", "config": _Evil(),
                     "state_dict": {}}, fh)
    with pytest.raises(ConfigError, match="not a molsym deploy file"):
        load_model(path)
    assert "code ran" not in capsys.readouterr().out


def test_load_model_takes_a_pretrained_name():
    from molsym.deploy.model_file import load_model as load
    from molsym.pretrained import pretrained_path

    by_name, by_path = load("qm9"), load(pretrained_path("qm9"))
    assert by_name.config() == by_path.config()
    with pytest.raises(ConfigError, match="not found"):
        load("qm9-no-such-model")
