"""Exploration: Langevin MD with the committee, several trajectories per round.

Every ``sample_every`` steps the frame and the committee's largest per-atom force spread
(``forces_std``, eV/Angstrom) are recorded. A trajectory that explodes
(:class:`ExplosionCheck`) is stopped and restarted from a labelled frame with fresh
velocities; the exploded frame itself is recorded with its reason but never proposed for
labelling (its geometry is broken); the last frame before it is marked ``info["before_explosion"]``
and proposed whatever its spread.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms, units

from molsym.learning.explosion import ExplosionCheck
from molsym.learning.settings import LoopSettings


@dataclasses.dataclass
class Exploration:
    """What one round's MD saw: the intact sampled frames (``info["spread"]``,
    ``info["trajectory"]``, ``info["step"]``, ``info["before_explosion"]``), every sampled
    spread per trajectory, and the explosions."""

    frames: list[Atoms]
    spreads: list[list[float]]
    explosions: list[dict]
    seconds: float

    def max_spread(self) -> float:
        """Largest spread of the round (eV/Angstrom); 0 when nothing was sampled."""
        values = [s for traj in self.spreads for s in traj if np.isfinite(s)]
        return float(max(values)) if values else 0.0

    def summary(self, threshold: float) -> dict:
        """JSON-friendly counts and spread statistics (eV/Angstrom)."""
        values = np.array([s for traj in self.spreads for s in traj], dtype=float)
        finite = values[np.isfinite(values)]
        return {
            "sampled_frames": int(values.size),
            "above_threshold": int((finite > threshold).sum()),
            "spread_median": float(np.median(finite)) if finite.size else 0.0,
            "spread_p90": float(np.percentile(finite, 90)) if finite.size else 0.0,
            "spread_max": float(finite.max()) if finite.size else 0.0,
            "explosions": self.explosions,
            "md_seconds": round(self.seconds, 3),
        }


def explore(calculator, starts: Sequence[Atoms], settings: LoopSettings, seed: int,
            on_trajectory: Callable[[int, int], None] | None = None) -> Exploration:
    """Run ``settings.num_trajectories`` Langevin trajectories (``settings.md_steps`` steps of
    ``timestep_fs`` at ``temperature``) with ``calculator`` (a committee's
    :class:`molsym.MolsymCalculator`), each starting from a frame of ``starts`` (labelled
    frames) drawn with ``seed``; restarts after an explosion draw again."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    spreads: list[list[float]] = []
    explosions: list[dict] = []
    for traj in range(settings.num_trajectories):
        if on_trajectory is not None:
            on_trajectory(traj, settings.num_trajectories)
        traj_spreads: list[float] = []
        _run_trajectory(calculator, starts, settings, rng, traj, frames, traj_spreads,
                        explosions)
        spreads.append(traj_spreads)
    return Exploration(frames, spreads, explosions, time.perf_counter() - t0)


def _start(starts: Sequence[Atoms], settings: LoopSettings, rng, calculator):
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    base = starts[int(rng.integers(len(starts)))]
    atoms = Atoms(numbers=base.numbers, positions=base.positions)
    atoms.info.update({k: v for k, v in base.info.items() if k in ("smiles", "total_charge",
                                                                 "multiplicity")})
    with warnings.catch_warnings():  # ASE >= 3.29 renames it; older ones lack the new name
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    atoms.calc = calculator
    dyn = Langevin(atoms, settings.timestep_fs * units.fs, temperature_K=settings.temperature,
                   friction=settings.friction / units.fs, fixcm=False, rng=rng)
    check = ExplosionCheck(base, settings.explode_at, settings.bond_stretch)
    return atoms, dyn, check


def _run_trajectory(calculator, starts, settings: LoopSettings, rng, traj: int,
                    frames: list[Atoms], spreads: list[float], explosions: list[dict]) -> None:
    atoms, dyn, check = _start(starts, settings, rng, calculator)
    step = 0
    segment: list[Atoms] = []  # frames since the last (re)start
    while step < settings.md_steps:
        n = min(settings.sample_every, settings.md_steps - step)
        try:
            dyn.run(n)
            spread = float(np.max(calculator.results["forces_std"]))
        except (ValueError, FloatingPointError, KeyError, RuntimeError):
            spread = float("nan")  # the model broke down (non-finite forces)
        step += n
        spreads.append(spread)
        reason = check.reason(atoms, spread)
        if reason is not None:
            explosions.append({"trajectory": traj, "step": step, "reason": reason})
            if segment:  # the last intact frame: where the committee went wrong
                segment[-1].info["before_explosion"] = 1
            segment = []
            atoms, dyn, check = _start(starts, settings, rng, calculator)
            continue
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions.copy())
        frame.info.update({k: v for k, v in atoms.info.items()
                           if k in ("smiles", "total_charge", "multiplicity")})
        frame.info.update({"spread": spread, "trajectory": traj, "step": step})
        frames.append(frame)
        segment.append(frame)
