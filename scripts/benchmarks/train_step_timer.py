"""Where a ``molsym train`` step spends its time: a Lightning callback plus the summary of
what it records (used by ``scripts/benchmarks/bench_train.py``).

The callback goes into the real CLI run as one more callback::

    molsym train ... +callbacks.step_timer._target_=scripts.benchmarks.train_step_timer.StepTimer \
        +callbacks.step_timer.path=steps.json

It stamps ``time.perf_counter()`` at Lightning's hooks of every training batch and wraps four
calls of the running module: ``forward`` (the model's energy and forces by autograd),
``loss_fn``, the optimizer's ``step`` (a post hook; clipping included) and ``ema.update``.
One training step, from one ``on_train_batch_start`` to the next, splits into

    data      previous batch end -> this batch start (loading, collation, transfer, loop)
    forward   the module's forward: model energy + forces (first backward)
    loss      the loss terms
    logging   rest of training_step (``self.log``) and zero_grad, up to the backward
    backward  loss backward (through the force graph: the double backward)
    optimizer gradient clipping + optimizer step
    ema       the EMA update
    hooks     the rest (Lightning's bookkeeping, the other callbacks' batch hooks)

``compute`` = forward + loss + backward + optimizer is what ``bench_model`` times as one
training step; ``overhead`` is 1 - compute / step. Validation and epoch ends (checkpoints) are
timed per epoch. Timer cost: a few ``perf_counter`` calls per step (microseconds).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

#: The parts of a step (seconds each), in the order of the module docstring.
PARTS = ("data", "forward", "loss", "logging", "backward", "optimizer", "ema", "hooks")
#: Parts that a bare training step (bench_model) has too.
COMPUTE = ("forward", "loss", "backward", "optimizer")


class StepTimer(pl.Callback):
    """Records the parts (:data:`PARTS`) of every training step and the seconds of each
    epoch's validation; writes them to ``path`` (JSON) when the fit ends.

    Args:
        path: output JSON: ``{"steps": [{"epoch", part: seconds, ...}], "epochs": [...]}``.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self.steps: list[dict[str, float]] = []
        self.epochs: list[dict[str, float]] = []
        self._now: dict[str, float] = {}
        self._sums: dict[str, float] = {}
        self._last_end: float | None = None

    # --- wrapped calls ------------------------------------------------------------------
    def _timed(self, part: str, fn: Callable[..., Any], training: Callable[[], bool]
               ) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not training():
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._sums[part] = self._sums.get(part, 0.0) + time.perf_counter() - start
        return call

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def training() -> bool:
            return bool(trainer.training)

        pl_module.forward = self._timed("forward", pl_module.forward, training)
        loss_fn = pl_module.loss_fn
        # instance attribute beats nn.Module.__call__'s lookup of forward
        loss_fn.forward = self._timed("loss", loss_fn.forward, training)
        ema = pl_module.ema
        ema.update = self._timed("ema", ema.update, training)
        for optimizer in trainer.optimizers:
            optimizer.register_step_post_hook(self._after_optimizer)

    def _after_optimizer(self, *_: Any) -> None:
        self._now["optimizer_end"] = time.perf_counter()

    # --- training batch hooks -------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = time.perf_counter()
        self._epoch_start = self._last_end

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._sums = {}
        self._now = {"start": time.perf_counter()}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._now["backward_start"] = time.perf_counter()

    def on_after_backward(self, trainer, pl_module) -> None:
        self._now["backward_end"] = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._now["optimizer_start"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        end = time.perf_counter()
        t, s = self._now, self._sums
        if not {"backward_start", "backward_end", "optimizer_start", "optimizer_end"} <= set(t):
            self._last_end = end  # a skipped step (no backward): not recorded
            return
        step = {
            "epoch": trainer.current_epoch,
            "data": t["start"] - (self._last_end if self._last_end is not None else t["start"]),
            "forward": s.get("forward", 0.0),
            "loss": s.get("loss", 0.0),
            "backward": t["backward_end"] - t["backward_start"],
            "optimizer": t["optimizer_end"] - t["optimizer_start"],
            "ema": s.get("ema", 0.0),
        }
        step["logging"] = (t["backward_start"] - t["start"]) - step["forward"] - step["loss"]
        inside = sum(step[k] for k in PARTS if k in step and k != "data")
        step["hooks"] = (end - t["start"]) - inside
        self.steps.append(step)
        self._last_end = end

    # --- per epoch --------------------------------------------------------------------------
    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self._val_s = time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append({"epoch": trainer.current_epoch,
                            "wall_s": time.perf_counter() - self._epoch_start,
                            "validation_s": getattr(self, "_val_s", 0.0)})
        self._val_s = 0.0

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"steps": self.steps, "epochs": self.epochs}))


def summarize(steps: Iterable[dict[str, float]], epochs: Iterable[dict[str, float]] = (),
              skip_epochs: int = 1) -> dict[str, Any]:
    """Mean part shares of the recorded steps of epochs ``>= skip_epochs`` (the first epoch
    compiles; when no later epoch was recorded, all steps are used, marked ``with_first``).

    Returns {"steps", "step_ms" (median step), "mean_ms" {part: ms}, "shares" {part: fraction
    of the summed step time}, "compute_share", "overhead", "validation_share" (validation
    seconds / epoch seconds of the same epochs)}.
    """
    steps, epochs = list(steps), list(epochs)
    later = [s for s in steps if s["epoch"] >= skip_epochs]
    with_first = not later
    chosen = steps if with_first else later
    if not chosen:
        raise ValueError("no training steps recorded")
    totals = {p: sum(s.get(p, 0.0) for s in chosen) for p in PARTS}
    total = sum(totals.values())
    compute = sum(totals[p] for p in COMPUTE)
    out: dict[str, Any] = {
        "steps": len(chosen), "with_first_epoch": with_first,
        "step_ms": round(1e3 * statistics.median(sum(s.get(p, 0.0) for p in PARTS)
                                                 for s in chosen), 3),
        "mean_ms": {p: round(1e3 * totals[p] / len(chosen), 4) for p in PARTS},
        "shares": {p: round(totals[p] / total, 4) for p in PARTS},
        "compute_share": round(compute / total, 4),
        "overhead": round(1.0 - compute / total, 4),
    }
    ep = [e for e in epochs if with_first or e["epoch"] >= skip_epochs]
    wall = sum(e["wall_s"] for e in ep)
    if wall > 0:
        out["validation_share"] = round(sum(e["validation_s"] for e in ep) / wall, 4)
        out["epoch_s"] = round(wall / len(ep), 3)
    return out
