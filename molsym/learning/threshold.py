"""The selection threshold of a round: absolute, or calibrated on the committee's own labels.

``learn.threshold_mode: absolute`` compares the committee's largest per-atom force spread
with ``learn.threshold`` (eV/Angstrom) every round. ``calibrated`` (the default) reads
``learn.threshold`` as a force *error* tolerance: every round it measures, on the labelled
frames (at most :data:`MAX_REFERENCE_FRAMES` of them), both the committee's largest per-atom
force spread and its largest per-atom force error, and divides the tolerance by their ratio
(``threshold_quantile`` quantile of the errors over that of the spreads). A committee trained
for a few epochs agrees closely while being wrong (spread 0.015, error 1 eV/Angstrom on EMT
ethanol), so an absolute 0.1 eV/Angstrom never picks a frame; its calibrated threshold is a
hundred times lower. A converged committee, whose spread tracks its error, gets about the
tolerance itself. The labelled frames include the ones the members were trained on, where
the error is lowest: the ratio is optimistic for a committee that fits its labels closely,
which errs towards fewer labels late in a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from molsym.learning.settings import LoopSettings

#: Labelled frames the spread is measured on (evenly spaced over the labels, when more).
MAX_REFERENCE_FRAMES = 200
#: The calibrated threshold never goes below this (eV/Angstrom).
MIN_THRESHOLD = 1e-6


def round_threshold(settings: LoopSettings, spreads: Sequence[float] | None,
                    errors: Sequence[float] | None) -> tuple[float, float | None]:
    """``(threshold, ratio)`` for a round: the threshold on the largest per-atom force spread
    (eV/Angstrom) and ``ratio``, the ``threshold_quantile`` quantile of ``errors`` over that of
    ``spreads`` (per labelled frame: the committee's largest per-atom force error and spread);
    the threshold is ``settings.threshold / ratio``, at least :data:`MIN_THRESHOLD`. Absolute
    mode, or no usable frames (no finite values, zero spread or error): ``settings.threshold``
    and None."""
    if settings.threshold_mode == "absolute" or spreads is None or errors is None:
        return settings.threshold, None
    pairs = np.array([(s, e) for s, e in zip(spreads, errors, strict=True)
                      if np.isfinite(s) and np.isfinite(e)], dtype=float).reshape(-1, 2)
    if not len(pairs):
        return settings.threshold, None
    spread, error = np.quantile(pairs, settings.threshold_quantile, axis=0)
    if not (spread > 0 and error > 0):
        return settings.threshold, None
    ratio = float(error / spread)
    return max(settings.threshold / ratio, MIN_THRESHOLD), ratio


def reference_frames(labels: Sequence[Atoms]) -> list[Atoms]:
    """At most :data:`MAX_REFERENCE_FRAMES` of ``labels``, evenly spaced (all when fewer)."""
    if len(labels) <= MAX_REFERENCE_FRAMES:
        return list(labels)
    picks = np.linspace(0, len(labels) - 1, MAX_REFERENCE_FRAMES).round().astype(int)
    return [labels[i] for i in picks]


def spreads_and_errors(model: Path, frames: Sequence[Atoms]) -> tuple[list[float],
                                                                        list[float]]:
    """The committee file ``model``'s largest per-atom force spread and largest per-atom force
    error norm (eV/Angstrom, against ``arrays["forces"]``) on each of the labelled ``frames``."""
    from molsym.inference.calculator import MolsymCalculator

    calc = MolsymCalculator(str(model), dtype="float64")
    spreads, errors = [], []
    for frame in frames:
        atoms = Atoms(numbers=frame.numbers, positions=frame.positions)
        atoms.calc = calc
        forces = atoms.get_forces()
        spreads.append(float(np.max(calc.results["forces_std"])))
        error = np.linalg.norm(forces - np.asarray(frame.arrays["forces"]), axis=1)
        errors.append(float(error.max()))
    return spreads, errors
