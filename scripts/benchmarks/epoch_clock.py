"""A Lightning callback that writes the wall-clock time (``time.time()``, seconds) of every
training epoch's start and of the end of training to a JSON file: the epoch clock of the
Lightning-based trainers in ``bench_train`` (``molsym train``, ``nequip-train``, SchNetPack).

Stdlib and Lightning only, so every venv imports it (the benchmark's runs have the repository
on PYTHONPATH). molsym and SchNetPack use ``pytorch_lightning``, nequip ``lightning.pytorch``;
each Trainer accepts only callbacks of its own package, so the class is made for ``package``:

    {"_target_": "scripts.benchmarks.epoch_clock.epoch_clock", "path": "epochs.json",
     "package": "lightning.pytorch"}
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any


def epoch_clock(path: str, package: str = "pytorch_lightning") -> Any:
    """An instance of a ``<package>.Callback`` that writes ``{"epoch_starts": [t0, t1, ...],
    "train_end": t}`` to ``path`` when training ends (and after every epoch)."""
    base = importlib.import_module(package).Callback

    class EpochClock(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.path = Path(path)
            self.starts: list[float] = []

        def _write(self, end: float | None) -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"epoch_starts": self.starts, "train_end": end}))

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.starts.append(time.time())
            if len(self.starts) > 1:
                self._write(None)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._write(time.time())

    return EpochClock()


def boundaries(record: dict[str, Any]) -> list[float]:
    """Epoch boundaries ``[start of epoch 0, start of epoch 1, ..., end of training]`` of a
    record written by :func:`epoch_clock`."""
    stamps = list(record.get("epoch_starts") or [])
    if record.get("train_end") is not None:
        stamps.append(record["train_end"])
    return stamps
