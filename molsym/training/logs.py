"""What ``molsym train`` prints: Lightning's chatter filtered, a progress bar on a terminal and
one line per epoch elsewhere (log files, CI, ``> out.txt``).

:func:`quiet_lightning` drops Lightning's lines that say nothing about the run (tips,
"GPU available: False", the ``weights_only`` notice of its own checkpoints, the ``_pytree``
deprecation warning); :func:`progress_bar` is the ``callbacks.progress_bar`` target.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

#: Beginnings of Lightning info lines that are dropped.
QUIET_PREFIXES = (
    "GPU available", "TPU available", "HPU available", "IPU available", "💡 Tip",
    "`weights_only` was not set", "Loading `train_dataloader` to estimate",
)
#: Loggers those lines come from.
LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
    "pytorch_lightning.trainer.connectors.checkpoint_connector",
    "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(QUIET_PREFIXES):
            return False
        # the test of the refit checkpoint, internal to every run
        return not (("Restoring states" in message or "Loaded model weights" in message)
                    and message.rstrip().endswith("refit.ckpt"))


_FILTER = _DropLines()


def quiet_lightning() -> None:
    """Filter Lightning's uninformative lines and warnings (idempotent, process-wide)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")


def progress_bar(refresh_rate: int = 10, stream=None) -> ProgressBar:
    """A TQDM bar when ``stream`` (default stderr) is a terminal, else :class:`EpochLines`."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return EpochLines()


def _item(name: str, value: float) -> str:
    """``val/forces_mae_meV_per_Angstrom`` -> ``val/forces MAE 23.1 meV/Angstrom``."""
    target, mae, unit = name.partition("_mae_")
    if not mae:
        return f"{name} {value:.4g}"
    return f"{target} MAE {value:.4g} {unit.replace('_per_', '/')}"


class EpochLines(ProgressBar):
    """One line per epoch on stdout: epoch, seconds, losses and the validation MAEs.

    A :class:`~pytorch_lightning.callbacks.ProgressBar`, so Lightning adds no bar of its own.
    """

    def __init__(self, stream=None):
        super().__init__()
        self._enabled = True
        self._stream = stream
        self._start = time.perf_counter()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if v.numel() == 1 and (k in ("train/loss", "val/loss") or "_mae" in k)}
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        parts = [f"epoch {trainer.current_epoch + 1}/{total}",
                 f"{time.perf_counter() - self._start:.1f} s"]
        parts += [_item(k, v) for k, v in sorted(metrics.items(), key=_order)]
        print("  ".join(parts), file=self._stream or sys.stdout, flush=True)


def _order(item: tuple[str, float]) -> tuple[int, str]:
    name = item[0]
    return (0 if name == "train/loss" else 1 if name == "val/loss" else 2, name)
