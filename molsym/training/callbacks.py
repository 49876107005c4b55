"""Lightning plug-ins for exact resumption: atomic checkpoint files, per-epoch shuffling."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO
from torch.utils.data import RandomSampler

from molsym.atomic import atomic_path


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
