"""`molsym train ensemble.size=K`: members in members/<k>/, model.pt their committee."""

import json

import torch
from ase.io import read

from molsym.deploy import load_model
from molsym.deploy.model_file import read_model_file
from molsym.inference.calculator import MolsymCalculator
from molsym.models import EnsembleModel
from molsym.training.run import train
from tests.cli.cli_helpers import tiny_train_config


def test_ensemble_run_trains_members_and_deploys_their_committee(emt_xyz, tmp_path):
    out = tmp_path / "committee"
    cfg = tiny_train_config(emt_xyz, out, "ensemble.size=3")
    result = train(cfg, out)
    members = [out / "members" / str(k) / "model.pt" for k in range(3)]
    assert all(p.is_file() for p in members)
    committee = load_model(out / "model.pt")
    assert isinstance(committee, EnsembleModel) and len(committee) == 3
    splits = [json.loads((p.parent / "splits.json").read_text()) for p in members]
    assert splits[0]["train"] == splits[1]["train"] == splits[2]["train"]  # same data
    first = [load_model(p).state_dict() for p in members[:2]]
    key = next(k for k in first[0] if k.endswith("weight"))
    assert not torch.equal(first[0][key], first[1][key])  # different initial weights
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result["metrics"] and "forces" in metrics
    assert read_model_file(out / "model.pt")["metadata"]["members"] == [
        f"members/{k}/model.pt" for k in range(3)]
    atoms = read(emt_xyz, index=0)
    atoms.calc = MolsymCalculator(out / "model.pt")
    atoms.get_forces()
    assert atoms.calc.results["forces_std"].shape == (len(atoms),)
    assert (atoms.calc.results["forces_std"] > 0).all()
    # run again: the finished members are reused, not retrained
    stamps = [p.stat().st_mtime_ns for p in members]
    train(tiny_train_config(emt_xyz, out, "ensemble.size=3"), out)
    assert [p.stat().st_mtime_ns for p in members] == stamps
