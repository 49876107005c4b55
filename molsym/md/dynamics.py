"""ASE integrators for the three ensembles, from settings in the units users give.

Inside molsym: eV, Angstrom; the MD settings come in fs, K, 1/fs and bar and are converted
here with :mod:`ase.units`, the only place they are.
"""

from __future__ import annotations

import ase
import numpy as np
from ase import units

from molsym.errors import ConfigError

ENSEMBLES = ("nve", "nvt", "npt")


def initial_velocities(atoms: ase.Atoms, temperature_K: float, seed: int) -> None:
    """Maxwell-Boltzmann velocities, scaled to exactly ``temperature_K`` (ASE's 3N degrees of
    freedom) after removing the centre-of-mass motion (and the rotation of a molecule:
    non-periodic input)."""
    from ase.md.velocitydistribution import (
        MaxwellBoltzmannDistribution,
        Stationary,
        ZeroRotation,
    )

    if temperature_K <= 0:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K,
                                 rng=np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any() and len(atoms) > 2:
        ZeroRotation(atoms)
    current = atoms.get_temperature()
    if current > 0:  # a small molecule's draw (and the removed motion) misses the target
        atoms.set_momenta(atoms.get_momenta() * np.sqrt(temperature_K / current))


def make_dynamics(atoms: ase.Atoms, ensemble: str, timestep_fs: float, temperature_K: float,
                  friction_per_fs: float = 0.01, pressure_bar: float = 1.0,
                  thermostat_fs: float = 100.0, barostat_fs: float = 1000.0, seed: int = 0):
    """The ASE dynamics object of ``ensemble``.

    nve: velocity Verlet. nvt: Langevin (``friction_per_fs``). npt: isotropic
    Martyna-Tobias-Klein barostat with Nose-Hoover chains (ASE's ``IsotropicMTKNPT``;
    ``thermostat_fs``/``barostat_fs`` damping times), for cells periodic in all directions.
    Set the initial velocities first: the NPT integrator keeps its own copy of the momenta.

    Raises:
        ConfigError: an unknown ensemble, a non-positive time step, or NPT for a structure
            that is not periodic in all three directions.
    """
    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ConfigError(f"unknown ensemble {ensemble!r}; choose from {', '.join(ENSEMBLES)}")
    if not timestep_fs > 0:
        raise ConfigError(f"the time step must be positive, got {timestep_fs} fs")
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        if not friction_per_fs > 0:
            raise ConfigError(f"NVT needs a positive friction, got {friction_per_fs} 1/fs")
        return Langevin(atoms, timestep=dt, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, rng=np.random.default_rng(seed))
    if not atoms.pbc.all() or atoms.cell.volume <= 0:
        raise ConfigError(
            "NPT needs a cell periodic in all three directions (an extxyz with Lattice and "
            'pbc="T T T"); this structure is not periodic: a molecule in vacuum has no '
            "pressure; use nvt or nve")
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=temperature_K,
                           pressure_au=pressure_bar * units.bar,
                           tdamp=thermostat_fs * units.fs, pdamp=barostat_fs * units.fs)
