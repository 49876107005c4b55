"""A pretrained name with a SMILES-native model: SMILES rows through it, structures not."""

import numpy as np
import torch
from ase.build import molecule

from molsym import pretrained
from molsym.deploy.model_file import save_model
from molsym.inference.predictor import predict
from molsym.models import EquivariantModel


def _model(seed):
    torch.manual_seed(seed)
    return EquivariantModel(cutoff=5.0, elements=[1, 6, 8], outputs=["energy", "homo"],
                            num_channels=8, l_max=1).double().eval()


def test_smiles_go_to_the_smiles_model_and_structures_to_the_main_one(tmp_path, monkeypatch):
    main, smiles = save_model(_model(0), tmp_path / "m.pt"), save_model(_model(1),
                                                                           tmp_path / "s.pt")
    monkeypatch.setitem(pretrained.PRETRAINED, "pair", {
        "file": str(main), "smiles_file": str(smiles), "description": "test"})
    water = molecule("H2O")
    routed = predict("pair", ["CO", water, "O"])
    by_main = predict(main, ["CO", water, "O"])
    by_smiles = predict(smiles, ["CO", water, "O"])
    for col in ("energy_eV", "homo_eV"):
        np.testing.assert_allclose(routed[col][[0, 2]], by_smiles[col][[0, 2]])
        np.testing.assert_allclose(routed[col][1], by_main[col][1])
        assert not np.allclose(by_main[col][[0, 2]], by_smiles[col][[0, 2]])
    assert list(routed["smiles"][[0, 2]]) == ["CO", "O"]


def test_without_a_smiles_model_file_the_main_model_does_everything(tmp_path, monkeypatch):
    main = save_model(_model(0), tmp_path / "m.pt")
    monkeypatch.setitem(pretrained.PRETRAINED, "single", {
        "file": str(main), "smiles_file": str(tmp_path / "missing.pt"), "description": "t"})
    np.testing.assert_allclose(predict("single", ["CO"])["energy_eV"],
                               predict(main, ["CO"])["energy_eV"])


def test_a_committee_adds_spread_columns(tmp_path):
    from ase.build import molecule as build

    from molsym.models import EnsembleModel

    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(EquivariantModel(cutoff=5.0, elements=[1, 6, 8],
                                        outputs=["energy", "forces", "homo"], num_channels=8,
                                        l_max=1).double().eval())
    path = save_model(EnsembleModel.from_models(members), tmp_path / "c.pt")
    table = predict(path, ["CCO", build("H2O")])
    for col in ("energy_std_eV", "homo_std_eV", "forces_std_max_eV_per_Angstrom"):
        assert (table[col] > 0).all(), col
    single = predict(save_model(members[0], tmp_path / "one.pt"), ["CCO"])
    assert "energy_std_eV" not in single.columns
