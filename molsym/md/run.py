"""The MD loop: steps, records, trajectory frames and stop conditions.

:func:`run_md` advances an ASE dynamics object step by step; every ``log_every`` steps it
records energies and temperature (and a committee's spread), every ``traj_every`` steps it
appends a frame, and after every step it checks that energies and forces are finite and that
no starting bond has stretched past ``max_bond_stretch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import ase
import numpy as np

from molsym.md.trajectory import TrajectoryWriter
from molsym.md.watch import BondWatch, nonfinite_problem


@dataclass
class MDRecord:
    """One logged step: time in fs, energies in eV, temperature in K, volume in Angstrom^3;
    ``energy_std`` (eV) and ``forces_std_max`` (eV/Angstrom, the largest per-atom spread)
    for a committee, else NaN."""

    step: int
    time_fs: float
    potential_energy: float
    kinetic_energy: float
    total_energy: float
    temperature_K: float
    volume: float
    energy_std: float = float("nan")
    forces_std_max: float = float("nan")

    def row(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class MDResult:
    """What a run did: its records, frames written and why it stopped early ('' if not)."""

    records: list[MDRecord] = field(default_factory=list)
    frames: int = 0
    stopped: str = ""
    steps_done: int = 0

    def drift_meV_per_atom(self, num_atoms: int) -> np.ndarray:
        """Total energy minus the first record's, meV/atom, per record."""
        total = np.array([r.total_energy for r in self.records])
        return (total - total[0]) / max(num_atoms, 1) * 1e3 if len(total) else total


class _Stop(Exception):
    pass


def _record(atoms: ase.Atoms, step: int, timestep_fs: float) -> MDRecord:
    calc = atoms.calc
    epot = float(atoms.get_potential_energy())
    ekin = float(atoms.get_kinetic_energy())
    results = getattr(calc, "results", {})
    fstd = results.get("forces_std")
    volume = float(atoms.get_volume()) if atoms.pbc.all() and atoms.cell.volume > 0 else 0.0
    return MDRecord(step, step * timestep_fs, epot, ekin, epot + ekin,
                    float(atoms.get_temperature()), volume,
                    float(results.get("energy_std", float("nan"))),
                    float(np.max(fstd)) if fstd is not None and len(fstd) else float("nan"))


def run_md(atoms: ase.Atoms, dynamics, steps: int, timestep_fs: float,
           trajectory: str | None = None, log_every: int = 10, traj_every: int = 10,
           max_bond_stretch: float = 2.0, max_forces_std: float | None = None,
           on_record: Callable[[MDRecord], None] | None = None) -> MDResult:
    """Run ``steps`` steps of ``dynamics`` (on ``atoms``, whose calculator is set).

    Args:
        trajectory: extxyz path for frames (None: none), every ``traj_every`` steps and the
            last one; records every ``log_every`` steps, the first and the last.
        max_bond_stretch: stop when a starting bond is longer than this factor times its
            starting length (0: never).
        max_forces_std: stop when a committee's per-atom force spread exceeds this
            (eV/Angstrom; None: never).
        on_record: called with each record (progress bar, log lines).

    Returns the records; ``stopped`` says why the run ended early ('' if it did not).
    """
    result = MDResult()
    watch = BondWatch(atoms, max_bond_stretch)
    writer = TrajectoryWriter(trajectory) if trajectory else None
    state = {"step": 0}

    def log(step: int) -> None:
        record = _record(atoms, step, timestep_fs)
        result.records.append(record)
        if on_record is not None:
            on_record(record)

    def frame(step: int) -> None:
        if writer is not None:
            writer.write(atoms, atoms.get_potential_energy(), atoms.get_forces(),
                         {"step": step, "time_fs": step * timestep_fs,
                          "temperature_K": float(atoms.get_temperature())})

    def after_step() -> None:
        step = int(dynamics.nsteps)
        if step == 0:  # ASE calls observers once before the first step too
            return
        state["step"] = step
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        problem = nonfinite_problem(energy, forces) or watch.problem(atoms)
        spread = getattr(atoms.calc, "results", {}).get("forces_std")
        if not problem and max_forces_std is not None and spread is not None \
                and float(np.max(spread)) > max_forces_std:
            problem = (f"the committee's force spread reached {float(np.max(spread)):.3g} "
                       f"eV/Angstrom (limit {max_forces_std:g}): the model is extrapolating")
        if step % log_every == 0 or step == steps or problem:
            log(step)
        if step % traj_every == 0 or step == steps or problem:
            frame(step)
        if problem:
            result.stopped = problem
            raise _Stop

    try:
        start = nonfinite_problem(atoms.get_potential_energy(), atoms.get_forces())
        if start:
            result.stopped = f"at the start: {start}"
            return result
        log(0)
        frame(0)
        dynamics.attach(after_step, interval=1)
        try:
            dynamics.run(steps)
        except _Stop:
            pass
    finally:
        result.steps_done = state["step"]
        if writer is not None:
            result.frames = writer.frames
            writer.close()
    return result

