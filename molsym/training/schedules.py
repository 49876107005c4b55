"""Learning-rate schedules that torch does not ship as one class."""

from __future__ import annotations

import math
import time

import torch


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over ``warmup_steps`` optimiser steps, then cosine decay to
    ``min_lr_ratio * base_lr`` at ``total_steps`` (constant afterwards).

    Step it once per optimiser step. ``total_steps`` is filled in from the trainer by
    :class:`molsym.training.MolsymModule` when left as None.

    ``time_budget_s``: a wall-clock budget (seconds of training since the first step, kept
    across a resume). The decay then follows whichever is further along, the steps or the
    clock, so a run stopped by ``trainer.max_time`` has decayed fully by then, whatever its
    speed (set ``trainer.max_epochs`` generously). Wall-clock dependent, so not bit-for-bit
    reproducible; None (default) uses the steps alone.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.01,
        time_budget_s: float | None = None,
        last_epoch: int = -1,
    ):
        if total_steps is None or int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if time_budget_s is not None and float(time_budget_s) <= 0:
            raise ValueError(f"time_budget_s must be > 0 seconds, got {time_budget_s}")
        self.total_steps = int(total_steps)
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_lr_ratio = float(min_lr_ratio)
        self.time_budget_s = None if time_budget_s is None else float(time_budget_s)
        self.elapsed_s = 0.0  # training seconds before the current clock started (resume)
        self._clock_start: float | None = None
        super().__init__(optimizer, last_epoch)

    def time_progress(self) -> float:
        """Fraction of ``time_budget_s`` spent (0 without a budget)."""
        if self.time_budget_s is None:
            return 0.0
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start = now
        return (self.elapsed_s + now - self._clock_start) / self.time_budget_s

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._clock_start is not None:
            state["elapsed_s"] = self.elapsed_s + time.monotonic() - self._clock_start
        state.pop("_clock_start", None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._clock_start = None

    def factor(self, step: int, time_progress: float = 0.0) -> float:
        """Multiplier of the base learning rate at optimiser step ``step`` (0-based), with
        ``time_progress`` of the wall-clock budget spent."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max((step - self.warmup_steps) / span, time_progress))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def get_lr(self) -> list[float]:
        f = self.factor(max(0, self.last_epoch), self.time_progress())
        return [base * f for base in self.base_lrs]
