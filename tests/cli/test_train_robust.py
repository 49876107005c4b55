"""`molsym train` never ends in silent nonsense: NaN labels, diverging runs, bad cutoffs, a GPU
trainer without a GPU (through the real CLI, seconds-long runs)."""

import json

import ase.io
import numpy as np
import pytest
import torch

from tests.cli.cli_helpers import tiny_args, write_emt_frames


def _error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines()
            if ln.startswith("molsym train: error:")]


def _with_nan(path, tmp_path, frame, what):
    frames = ase.io.read(path, index=":")
    atoms = frames[frame]
    energy, forces = atoms.get_potential_energy(), atoms.get_forces().copy()
    if what == "forces":
        forces[2, 1] = np.nan
    else:
        energy = np.nan
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    out = tmp_path / f"nan_{what}.extxyz"
    ase.io.write(out, frames, format="extxyz")
    return out


@pytest.mark.parametrize("what", ["forces", "energy"])
def test_nan_label_fails_naming_file_and_frame(capsys, emt_xyz, tmp_path, what):
    from molsym.cli.train import main

    data = _with_nan(emt_xyz, tmp_path, 17, what)
    run = tmp_path / "run"
    assert main(tiny_args(data, run)) == 1
    (line,) = _error_lines(capsys)
    assert f"{data}, frame 17: {what} not finite" in line and "data.on_error=skip" in line
    assert not (run / "model.pt").exists()


def test_nan_label_skipped_with_on_error_skip(emt_xyz, tmp_path):
    from molsym.cli.train import main

    data = _with_nan(emt_xyz, tmp_path, 17, "forces")
    run = tmp_path / "run"
    assert main(tiny_args(data, run, "data.on_error=skip")) == 0
    splits = json.loads((run / "splits.json").read_text())
    assert sum(len(splits[k]) for k in ("train", "val", "test")) == 39
    stats = json.loads((run / "statistics.json").read_text())
    assert np.isfinite(stats["forces_rms"])
    payload = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in payload["state_dict"].values()
               if t.is_floating_point())


def test_diverging_run_stops_with_one_line_and_writes_no_model(capsys, emt_xyz, tmp_path):
    from molsym.cli.train import main

    run = tmp_path / "run"
    assert main(tiny_args(emt_xyz, run, "optimizer.lr=1e30", "trainer.max_epochs=3")) == 1
    (line,) = _error_lines(capsys)
    assert "training diverged" in line and "no model.pt written" in line
    assert not (run / "model.pt").exists() and not (run / "metrics.json").exists()


def test_nonfinite_weights_are_never_deployed(emt_xyz, tmp_path, monkeypatch):
    """The last check before model.pt: NaN EMA weights (however they came) raise."""
    from molsym.errors import TrainingDiverged
    from molsym.training import module as module_file
    from molsym.training.run import train
    from tests.cli.cli_helpers import compose_train_config

    def poisoned(self):
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("nan"))
        return self.model

    monkeypatch.setattr(module_file.MolsymModule, "averaged_model", poisoned)
    cfg = compose_train_config([a for a in tiny_args(emt_xyz, tmp_path) if "hydra" not in a])
    with pytest.raises(TrainingDiverged, match="not finite"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("cutoff", ["0.5", "0.05"])
def test_cutoff_without_neighbours_is_one_line(capsys, emt_xyz, tmp_path, cutoff):
    from molsym.cli.train import main

    assert main(tiny_args(emt_xyz, tmp_path / "run", f"cutoff={cutoff}")) == 2
    (line,) = _error_lines(capsys)
    assert f"cutoff={cutoff}" in line and "division" not in line


@pytest.mark.parametrize("size", ["model.num_channels=0", "model.num_layers=0",
                                  "model.num_radial=0", "model.l_max=-1"])
def test_model_sizes_below_one_are_one_line(capsys, emt_xyz, tmp_path, size):
    from molsym.cli.train import main

    assert main(tiny_args(emt_xyz, tmp_path / "run", size)) == 2
    (line,) = _error_lines(capsys)
    assert size.split("=")[0] in line
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_gpu_says_what_to_do(capsys, emt_xyz, tmp_path):
    from molsym.cli.train import main

    assert main(tiny_args(emt_xyz, tmp_path / "run", "trainer=gpu")) == 2
    (line,) = _error_lines(capsys)
    assert "trainer=cpu" in line and "No supported gpu backend" not in line


def test_energy_reference_of_one_molecule_is_flagged(tmp_path):
    """Frames of one molecule fix only its total reference energy: the run warns, the deploy
    file says so, and the helper flags other compositions."""
    from molsym.cli.train import main
    from molsym.data.statistics import composition_covered

    data = write_emt_frames(tmp_path / "ethanol.extxyz", n=40)
    run = tmp_path / "run"
    assert main(tiny_args(data, run)) == 0
    log = (run / "train.log").read_text()
    assert "cannot be separated" in log and "'H'" in log and "'O'" in log
    ref = torch.load(run / "model.pt", weights_only=True)["metadata"]["energy_reference"]
    assert ref["determined"] is False and ref["elements"] == [1, 6, 8]
    assert composition_covered({1: 6, 6: 2, 8: 1}, ref)  # ethanol itself
    assert composition_covered({1: 12, 6: 4, 8: 2}, ref)  # two ethanols
    assert not composition_covered({1: 2, 8: 1}, ref)  # water
    assert not composition_covered({1: 6, 6: 2, 7: 1}, ref)  # an element never seen
