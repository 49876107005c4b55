"""Learning-rate schedules that torch does not ship as one class."""

from __future__ import annotations

import math

import torch


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over ``warmup_steps`` optimiser steps, then cosine decay to
    ``min_lr_ratio * base_lr`` at ``total_steps`` (constant afterwards).

    Step it once per optimiser step. ``total_steps`` is filled in from the trainer by
    :class:`molsym.training.MolsymModule` when left as None.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.01,
        last_epoch: int = -1,
    ):
        if total_steps is None or int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = int(total_steps)
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def get_lr(self) -> list[float]:
        f = self.factor(max(0, self.last_epoch))
        return [base * f for base in self.base_lrs]
