"""Calibration of a committee: rank correlation, flagged share, `molsym eval` report."""

import json

import numpy as np
import torch

from molsym.cli.eval import main as eval_main
from molsym.deploy.model_file import save_model
from molsym.models import EnsembleModel, EquivariantModel
from molsym.training.calibration import flagged_share, spearman
from tests.cli.cli_helpers import write_emt_frames


def test_spearman_and_flagged_share():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert abs(spearman(a, a**3) - 1.0) < 1e-12 and abs(spearman(a, -a) + 1.0) < 1e-12
    assert abs(spearman(a, np.array([2.0, 1.0, 4.0, 3.0, 5.0])) - 0.8) < 1e-12
    error = np.arange(100.0)
    assert flagged_share(error, error) == 1.0
    assert flagged_share(error, -error) == 0.0


def test_eval_reports_a_committees_calibration(tmp_path, capsys):
    data = write_emt_frames(tmp_path / "frames.extxyz", n=12)
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(EquivariantModel(cutoff=4.0, elements=[1, 6, 8], num_channels=8,
                                        l_max=1))
    model = save_model(EnsembleModel.from_models(members), tmp_path / "c.pt")
    out = tmp_path / "eval" / "metrics.json"
    assert eval_main([str(data), "--model", str(model), "-o", str(out)]) == 0
    report = json.loads(out.read_text())["calibration"]
    for what in ("energy", "forces"):
        assert report[what]["structures"] == 12
        assert -1.0 <= report[what]["spearman"] <= 1.0
        assert report[what]["mean_spread"] > 0
    assert (out.parent / "metrics_calibration.png").is_file()
    assert "Spearman(error, spread)" in capsys.readouterr().out
    single = save_model(members[0], tmp_path / "one.pt")
    assert eval_main([str(data), "--model", str(single), "-o", str(tmp_path / "m1.json")]) == 0
    assert "calibration" not in json.loads((tmp_path / "m1.json").read_text())
