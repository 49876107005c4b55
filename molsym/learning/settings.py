"""The knobs of the active-learning loop (``learn:`` in ``configs/learn.yaml``), checked once."""

from __future__ import annotations

import dataclasses

from molsym.errors import ConfigError

#: The start set must give the committee a training, a validation and a test structure.
MIN_LABELS = 3


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """Budgets, start set, exploration, selection, explosion and labelling settings.

    Units: Angstrom, eV/Angstrom, K, fs; ``friction`` in 1/fs; ``max_hours`` in hours.
    ``threshold`` is the threshold on the force spread with ``threshold_mode="absolute"``, the
    force error tolerance the spread is calibrated to with ``"calibrated"``
    (:mod:`molsym.learning.threshold`).
    """

    max_labels: int = 600
    max_hours: float | None = None
    max_rounds: int = 20
    num_conformers: int = 4
    rattled_copies: int = 4
    rattle_stdev: float = 0.05
    temperature: float = 300.0
    timestep_fs: float = 0.5
    friction: float = 0.01
    num_trajectories: int = 4
    md_steps: int = 400
    sample_every: int = 10
    threshold: float = 0.1
    threshold_mode: str = "calibrated"
    threshold_quantile: float = 0.5
    labels_per_round: int = 50
    min_frame_distance: float = 0.1
    explode_factor: float = 10.0
    bond_stretch: float = 1.6
    oracle_workers: int = 1
    oracle_timeout_s: float | None = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.max_labels, int) or self.max_labels < MIN_LABELS:
            raise ConfigError(
                f"learn.max_labels={self.max_labels}: the label budget must be at least "
                f"{MIN_LABELS} (the start set needs a training, a validation and a test label)")
        if self.max_hours is not None and not self.max_hours > 0:
            raise ConfigError(f"learn.max_hours={self.max_hours}: the time budget must be "
                              "positive (or null for none)")
        for name in ("max_rounds", "num_conformers", "num_trajectories", "md_steps",
                     "sample_every", "labels_per_round", "oracle_workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"learn.{name} must be an integer >= 1, got {value!r}")
        if self.rattled_copies < 0 or self.rattle_stdev < 0:
            raise ConfigError("learn.rattled_copies and learn.rattle_stdev must be >= 0")
        for name in ("temperature", "timestep_fs", "friction", "threshold"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"learn.{name} must be positive, got {getattr(self, name)}")
        if self.threshold_mode not in ("calibrated", "absolute"):
            raise ConfigError(f"learn.threshold_mode must be 'calibrated' or 'absolute', got "
                              f"{self.threshold_mode!r}")
        if not 0 < self.threshold_quantile <= 1:
            raise ConfigError("learn.threshold_quantile must be in (0, 1]")
        if self.explode_factor <= 1 or self.bond_stretch <= 1:
            raise ConfigError("learn.explode_factor and learn.bond_stretch must be above 1")
        if self.min_frame_distance < 0:
            raise ConfigError("learn.min_frame_distance must be >= 0")

    @property
    def explode_at(self) -> float:
        """Force spread (eV/Angstrom) past which a trajectory has exploded: ``explode_factor``
        times ``threshold`` as configured, in either mode (a calibrated threshold can be far
        lower, and would then stop every trajectory of a barely trained committee)."""
        return self.explode_factor * self.threshold
