"""Lightning plug-ins: atomic checkpoint files, per-epoch shuffling (exact resumption) and a
guard that stops a run whose loss or weights are no longer finite."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO
from torch.utils.data import RandomSampler

from molsym.atomic import atomic_path
from molsym.errors import TrainingDiverged


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place, so a process
    killed while saving never leaves a truncated ``last.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class EpochSeededShuffle(pl.Callback):
    """Makes the training order of epoch ``e`` a function of ``(seed, e)`` only.

    A single-process DataLoader shuffles with one generator that advances every epoch, so a
    run resumed from a checkpoint would see other orders than an uninterrupted one. This
    callback gives the sampler a ``set_epoch`` (which Lightning calls at the start of every
    epoch, also after a restart) that reseeds its generator. Distributed samplers already
    have one and are left alone.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = trainer.train_dataloader
        for loader in loaders if isinstance(loaders, list | tuple) else [loaders]:
            sampler = getattr(loader, "sampler", None)
            if isinstance(sampler, RandomSampler) and not hasattr(sampler, "set_epoch"):

                def set_epoch(epoch: int, _s: RandomSampler = sampler, _seed: int = self.seed):
                    # a fresh generator: the order depends on (seed, epoch) only
                    _s.generator = torch.Generator().manual_seed(_seed * 100_003 + int(epoch))

                sampler.set_epoch = set_epoch
                set_epoch(trainer.current_epoch)


def first_nonfinite(module: torch.nn.Module) -> str | None:
    """Name of the first parameter or buffer of ``module`` holding a NaN or inf, else None."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


class FiniteGuard(pl.Callback):
    """Raises :class:`TrainingDiverged` as soon as the training loss, the weights (checked
    every epoch, before any checkpoint of that epoch is written) or the validation loss are
    not finite. Without it a NaN run goes on to the end (or early stopping ends it quietly,
    as a NaN ``val/loss`` never improves) and its NaN weights are deployed."""

    def _stop(self, trainer: pl.Trainer, what: str) -> None:
        raise TrainingDiverged(
            f"training diverged at epoch {trainer.current_epoch}, step {trainer.global_step}: "
            f"{what}; no model.pt written (lower optimizer.lr, check the labels, or resume from "
            "an earlier checkpoint)")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            self._stop(trainer, f"the training loss is {float(loss.detach().reshape(-1)[0])}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        name = first_nonfinite(pl_module)
        if name is not None:
            self._stop(trainer, f"weight {name} is not finite")

    def on_validation_end(self, trainer, pl_module) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        if not bool(torch.isfinite(torch.as_tensor(loss)).all()):
            self._stop(trainer, f"the validation loss is {float(loss)}")
