"""i-PI drives a molsym model over a unix socket: path-integral NVT of ethanol (4 beads) runs,
i-PI's potential at step 0 is the model's energy (units right across the socket), and
classical NVE (1 bead, no thermostat) conserves i-PI's conserved quantity."""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from molsym import MolsymCalculator
from molsym.engines.ipi import (
    UNIX_SOCKET_PREFIX,
    input_xml,
    read_properties,
    run_client,
    write_ipi_xyz,
)
from molsym.models import MODEL_CLASSES

IPI = shutil.which("i-pi") or (
    str(Path(sys.executable).parent / "i-pi") if (Path(sys.executable).parent / "i-pi").exists()
    else None)
pytestmark = pytest.mark.skipif(IPI is None, reason="i-PI not installed (pip install ipi)")
WAIT_S = 300  # seconds for i-PI to open its socket, answer, and exit


def make_model(energy_scale=20.0):
    torch.manual_seed(0)
    return MODEL_CLASSES["invariant"](
        cutoff=4.0, elements=[1, 6, 8], outputs=["energy", "forces"], num_channels=16,
        num_layers=2, num_radial=8, radial_hidden=16, readout_hidden=16,
        energy_scale=energy_scale,
    ).double().eval()


def run_ipi(tmp_path, atoms, model, **kwargs):
    """Start i-PI on input.xml in tmp_path, serve it with run_client, return (properties,
    number of force evaluations, i-PI's log)."""
    name = f"molsym-test-{uuid.uuid4().hex[:8]}"
    write_ipi_xyz(atoms, tmp_path / "init.xyz")
    (tmp_path / "input.xml").write_text(input_xml("init.xyz", unixsocket=name, **kwargs))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # generous limits: on a loaded 2-core CI machine i-PI's start alone took tens of seconds
    with open(tmp_path / "ipi.log", "w") as log:
        server = subprocess.Popen([IPI, "input.xml"], cwd=tmp_path, stdout=log,
                                  stderr=subprocess.STDOUT, env=env)
    try:
        socket_file = Path(UNIX_SOCKET_PREFIX + name)
        deadline = time.monotonic() + WAIT_S
        while not socket_file.exists():
            assert server.poll() is None, (tmp_path / "ipi.log").read_text()
            assert time.monotonic() < deadline, f"i-PI did not open its socket in {WAIT_S} s"
            time.sleep(0.1)
        calls = run_client(model, atoms, unixsocket=name, timeout=WAIT_S)
        assert server.wait(timeout=WAIT_S) == 0, (tmp_path / "ipi.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return read_properties(tmp_path / "simulation.out"), calls, (tmp_path / "ipi.log")


def test_path_integral_nvt_through_the_socket(tmp_path):
    model = make_model()
    atoms = molecule("CH3CH2OH")
    props, calls, _ = run_ipi(tmp_path, atoms, model, nbeads=4, steps=10)
    # columns: step, time, conserved, temperature, potential, kinetic_cv
    np.testing.assert_array_equal(props[:, 0], np.arange(11))
    assert calls == 4 * 11  # every bead at the start and after each of the 10 steps
    atoms.calc = MolsymCalculator(model)
    assert props[0, 4] == pytest.approx(atoms.get_potential_energy(), rel=1e-6)
    assert np.all(np.isfinite(props))


def test_classical_nve_conserves_energy(tmp_path):
    """1 bead, NVE, 0.25 fs x 200 steps of ethanol at 300 K: i-PI's conserved quantity
    stays within 5 meV while the potential swings by far more."""
    model = make_model()
    atoms = molecule("CH3CH2OH")
    props, calls, _ = run_ipi(tmp_path, atoms, model, nbeads=1, steps=200, timestep_fs=0.25,
                              ensemble="nve")
    assert calls == 201
    drift = np.abs(props[:, 2] - props[0, 2]).max()
    print(f"drift {drift * 1e3:.3f} meV, potential swing {np.ptp(props[:, 4]) * 1e3:.1f} meV")
    assert np.ptp(props[:, 4]) > 0.02
    assert drift < 5e-3


def test_no_server_is_a_clear_error_after_the_wait():
    name = f"molsym-nobody-{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError,
                       match=f"i-PI does not accept connections on {UNIX_SOCKET_PREFIX}{name}"):
        run_client(make_model(), molecule("H2O"), unixsocket=name, connect_wait_s=0.5)
    assert 0.5 <= time.monotonic() - start < 30
