"""`molsym md` through its CLI: conservation, thermostat, falling apart, committee spread,
NPT, SMILES input, bad input, and a killed run's trajectory."""

import csv
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
import torch

from molsym.deploy import load_model, save_model
from molsym.models import EnsembleModel


def _md(model, structure, out, *extra):
    from molsym.cli.md import main

    return main(["--model", str(model), str(structure), "-o", str(out), "--progress", "never",
                 *extra])


def _log(traj):
    with open(traj.with_suffix(".csv")) as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def model(trained_run):
    return trained_run / "model.pt"


def test_nve_conserves_energy_and_writes_trajectory_log_plot(model, emt_xyz, tmp_path):
    traj = tmp_path / "nve.extxyz"
    assert _md(model, emt_xyz, traj, "--ensemble", "nve", "--steps", "200", "--timestep",
               "0.25", "--temperature", "300", "--max-bond-stretch", "0") == 0
    rows = _log(traj)
    assert [r["step"] for r in rows] == list(range(0, 201, 10))
    assert rows[0]["temperature_K"] == pytest.approx(300.0, rel=1e-6)  # scaled to the target
    total = np.array([r["total_energy"] for r in rows])
    potential = np.array([r["potential_energy"] for r in rows])
    n = 9
    assert np.ptp(potential) / n > 1e-4  # energy moved between potential and kinetic ...
    assert np.abs(total - total[0]).max() / n < 5e-4  # ... while the total stayed (eV/atom)
    frames = ase.io.read(traj, ":")
    assert [f.info["step"] for f in frames] == list(range(0, 201, 10))
    assert np.isfinite(frames[-1].get_forces()).all() and frames[-1].get_velocities().any()
    png = traj.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.parametrize("start, target", [(1500.0, 50.0), (50.0, 1500.0)])
def test_langevin_takes_the_temperature_towards_the_target(model, emt_xyz, tmp_path, start,
                                                           target):
    traj = tmp_path / "nvt.extxyz"
    assert _md(model, emt_xyz, traj, "--ensemble", "nvt", "--steps", "300", "--temperature",
               str(target), "--initial-temperature", str(start), "--friction", "0.1",
               "--max-bond-stretch", "0", "--log-every", "2", "--seed", "3") == 0
    temps = np.array([r["temperature_K"] for r in _log(traj)])
    late = temps[len(temps) // 2:].mean()
    assert temps[0] == pytest.approx(start, rel=1e-6)
    assert abs(late - target) < 0.5 * abs(start - target), (start, target, late)


def test_a_structure_that_falls_apart_stops_with_the_message(model, emt_xyz, tmp_path,
                                                             capsys):
    traj = tmp_path / "hot.extxyz"
    # 10^6 K: atoms fly beyond the 5 Angstrom cutoff, where no force holds them
    assert _md(model, emt_xyz, traj, "--ensemble", "nve", "--steps", "2000",
               "--initial-temperature", "1e6", "--traj-every", "50") == 1
    err = capsys.readouterr().err
    assert "stopped at step" in err and "the structure falls apart" in err
    assert "times its starting" in err
    frames = ase.io.read(traj, ":")
    stopped = int(err.split("stopped at step ")[1].split()[0])
    assert stopped < 2000 and frames[-1].info["step"] == stopped
    assert _log(traj)[-1]["step"] == stopped


def test_committee_spread_is_logged_and_can_stop_the_run(model, emt_xyz, tmp_path, capsys):
    first, second = load_model(model), load_model(model)
    with torch.no_grad():
        for p in second.parameters():
            p.mul_(1.05)
    committee = save_model(EnsembleModel.from_models([first, second]), tmp_path / "c.pt")
    traj = tmp_path / "c.extxyz"
    assert _md(committee, emt_xyz, traj, "--steps", "20", "--max-bond-stretch", "0") == 0
    assert "committee spread logged" in capsys.readouterr().err
    spread = [r["forces_std_max"] for r in _log(traj)]
    assert all(np.isfinite(s) and s > 0 for s in spread)
    assert _md(committee, emt_xyz, traj, "--steps", "20", "--max-bond-stretch", "0",
               "--max-forces-std", f"{min(spread) / 2}") == 1
    assert "force spread reached" in capsys.readouterr().err


def test_npt_changes_the_volume_of_a_periodic_box(model, emt_xyz, tmp_path):
    atoms = ase.io.read(emt_xyz, 0)
    atoms.calc = None
    atoms.set_cell([9.0, 9.0, 9.0])
    atoms.center()
    atoms.pbc = True
    box = tmp_path / "box.extxyz"
    ase.io.write(box, atoms)
    traj = tmp_path / "npt.extxyz"
    assert _md(model, box, traj, "--ensemble", "npt", "--steps", "30", "--pressure", "5000",
               "--max-bond-stretch", "0") == 0
    volumes = [r["volume"] for r in _log(traj)]
    assert volumes[0] == pytest.approx(729.0) and volumes[-1] != pytest.approx(729.0, abs=1e-6)
    assert ase.io.read(traj, -1).pbc.all()


def test_smiles_input_is_embedded_and_run(model, tmp_path):
    traj = tmp_path / "smiles.extxyz"
    assert _md(model, "CCO", traj, "--steps", "10", "--max-bond-stretch", "0") == 0
    frames = ase.io.read(traj, ":")
    assert sorted(frames[0].numbers.tolist()) == sorted([6, 6, 8] + [1] * 6)


@pytest.mark.parametrize("make_args, words", [
    (lambda d, m: [m, d, "--ensemble", "npt"], "NPT needs a cell periodic"),
    (lambda d, m: [m, "missing.xyz"], "missing.xyz: file not found"),
    (lambda d, m: [m, "C1CC"], "C1CC"),
    (lambda d, m: [m, d, "--frame", "99"], "--frame 99, but it holds 40 structure(s)"),
    (lambda d, m: [m, "CCN"], "element(s) N not covered by the model"),
    (lambda d, m: [d, d], "not a molsym deploy file"),
])
def test_bad_input_is_one_line_and_status_2(model, emt_xyz, tmp_path, capsys, make_args, words):
    from molsym.cli.md import main

    model_arg, *rest = make_args(str(emt_xyz), str(model))
    out = tmp_path / "x.extxyz"
    assert main(["--model", model_arg, *rest, "-o", str(out), "--progress", "never"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.strip().count("\n") == 0, err
    assert not out.exists()


def test_trajectory_output_must_be_extxyz(model, emt_xyz, tmp_path, capsys):
    assert _md(model, emt_xyz, tmp_path / "out.txt") == 2
    assert "the trajectory is extxyz" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_run_leaves_a_readable_trajectory(model, emt_xyz, tmp_path):
    traj = tmp_path / "killed.extxyz"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "molsym.cli.main", "md", "--model",
                             str(model), str(emt_xyz), "-o", str(traj), "--steps", "100000",
                             "--traj-every", "1", "--max-bond-stretch", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if traj.exists() and traj.read_text().count("Lattice") + traj.read_text().count(
                    "Properties") >= 20:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    frames = ase.io.read(traj, ":")
    assert len(frames) >= 10
    assert [f.info["step"] for f in frames] == list(range(len(frames)))
    assert all(len(f) == 9 and np.isfinite(f.positions).all() for f in frames)
