"""Training: the LightningModule, losses, metrics in physical units, weight EMA, schedules.

The run itself (config -> data -> model -> Lightning -> files) is :func:`molsym.training.run.train`.
"""

from molsym.training.ema import ExponentialMovingAverage
from molsym.training.losses import Loss
from molsym.training.metrics import ErrorAccumulator, format_table
from molsym.training.module import MolsymModule
from molsym.training.schedules import WarmupCosineLR

__all__ = [
    "ErrorAccumulator",
    "ExponentialMovingAverage",
    "Loss",
    "MolsymModule",
    "WarmupCosineLR",
    "format_table",
]
