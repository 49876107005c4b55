"""Resuming a run: its own config, a checked checkpoint, no overwritten experiment, the
metrics history kept.

``molsym train ckpt_path=DIR/checkpoints/last.ckpt hydra.run.dir=DIR`` resumes the run of
``DIR/config.yaml``; overrides may change how long and where it trains (:data:`RESUMABLE`),
never what it trains (data, model, loss), which is a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from molsym.atomic import atomic_output
from molsym.errors import ConfigError

log = logging.getLogger(__name__)

#: Config keys (and everything under them) that a resume may change: how long, where and how
#: fast it trains, not what.
RESUMABLE = ("trainer", "num_threads", "tf32", "ckpt_path", "callbacks.progress_bar",
             "callbacks.early_stopping.patience", "callbacks.lr_monitor")


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint, read as data only (``weights_only=True``: no pickled code runs).

    Raises:
        ConfigError: not a file, a molsym deploy file (``model.pt``), or no Lightning
            checkpoint (one line each).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path: checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and unpickler errors alike
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"ckpt_path: {path} is not a Lightning checkpoint that can be read "
                          f"safely ({reason[:120]})") from None
    if isinstance(ckpt, dict) and "model_class" in ckpt and "format_version" in ckpt:
        raise ConfigError(f"ckpt_path: {path} is a molsym deploy file (model.pt), not a "
                          "training checkpoint; resume from <run>/checkpoints/last.ckpt")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt \
            or "pytorch-lightning_version" not in ckpt:
        raise ConfigError(f"ckpt_path: {path} is not a Lightning checkpoint (no state_dict "
                          "and pytorch-lightning_version)")
    return ckpt


def check_state_dict(ckpt: dict, module: torch.nn.Module, path: str | Path) -> None:
    """The checkpoint's weights must fit ``module`` (same names and shapes): a checkpoint of
    another model config is a one-line ConfigError, not Lightning's list of mismatches."""
    theirs, own = ckpt["state_dict"], module.state_dict()
    for name, tensor in own.items():
        other = theirs.get(name)
        if other is None or tuple(other.shape) != tuple(tensor.shape):
            found = "missing" if other is None else f"shape {tuple(other.shape)}"
            raise ConfigError(
                f"ckpt_path: {path} holds another model than this config ({name}: {found} "
                f"in the checkpoint, {tuple(tensor.shape)} here); resume with the run's "
                "model config")
    extra = sorted(set(theirs) - set(own))
    if extra:
        raise ConfigError(f"ckpt_path: {path} holds another model than this config "
                          f"({extra[0]} is not a weight of this one)")


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def config_differences(a: DictConfig, b: DictConfig, only: Sequence[str] | None = None
                       ) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` of the leaves that differ, outside :data:`RESUMABLE`:
    those under the keys ``only`` when given, else those that both configs have (a key that
    one lacks is taken for a config written by another molsym version)."""
    la = _leaves(OmegaConf.to_container(a, resolve=True))
    lb = _leaves(OmegaConf.to_container(b, resolve=True))
    out = []
    for key in sorted(set(la) | set(lb)):
        if _resumable(key) or la.get(key) == lb.get(key):
            continue
        if only is None and (key not in la or key not in lb):
            continue
        if only is not None and not any(key == k or key.startswith(k + ".") for k in only):
            continue
        out.append((key, la.get(key), lb.get(key)))
    return out


def _override_keys(overrides: Sequence[str]) -> list[str] | None:
    """The config keys a list of Hydra overrides sets (None: one names a group that is not a
    key of the config, e.g. ``experiment=...``: compare everything)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.startswith("hydra"):
            continue
        if key.split("@")[0] == "experiment":
            return None
        keys.append(key.split("@")[0])
    return keys


def resume_config(cfg: DictConfig, ckpt_path: str | Path, overrides: Sequence[str] | None
                  ) -> DictConfig:
    """The config of the run that wrote ``ckpt_path`` (``<run>/config.yaml`` next to its
    ``checkpoints/`` folder), with the :data:`RESUMABLE` values of ``cfg`` on top.

    ``overrides`` (the command line) name the keys the user set; a set key outside
    :data:`RESUMABLE` that differs from the run's value is a ConfigError. None (an in-process
    call): ``cfg`` is the whole request, every key is compared. Without a saved config.yaml
    ``cfg`` is used as it is (the checkpoint's weights are still checked against it).
    """
    ckpt_path = Path(ckpt_path).resolve()
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" \
        else ckpt_path.parent
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        log.warning("resuming from %s: no config.yaml in %s, using the config as given",
                    ckpt_path, run_dir)
        return cfg
    saved = OmegaConf.load(saved_file)
    only = None if overrides is None else _override_keys(overrides)
    conflicts = config_differences(cfg, saved, only)
    if conflicts:
        key, new, old = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ConfigError(
            f"ckpt_path: {run_dir} was trained with {key}={old!r}, not {new!r}{more}; a resume "
            f"keeps the run's data, model and loss (it may change {', '.join(RESUMABLE[:4])}, "
            "...); train another experiment in a new hydra.run.dir")
    merged = saved.copy()
    for key in RESUMABLE if only is None else [k for k in only if _resumable(k)]:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None or OmegaConf.select(saved, key, default=None) is not None:
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
    merged.ckpt_path = str(ckpt_path)
    log.info("resuming the run of %s from %s", saved_file, ckpt_path)
    return merged


def check_run_dir(cfg: DictConfig, out: Path) -> None:
    """A run folder that holds another experiment's outputs is not overwritten."""
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        return
    conflicts = config_differences(cfg, OmegaConf.load(saved_file))
    if conflicts:
        key, new, old = conflicts[0]
        raise ConfigError(
            f"{out} holds the outputs of another run ({key}={old!r} there, {new!r} here); "
            "choose a new hydra.run.dir, or resume that run with "
            f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}")


class _HistoryWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv``; at the first save the rows of the epochs that this
    run logs again (from its first epoch on) are dropped and the new rows appended."""

    def _check_log_dir_exists(self) -> None:
        self._history: list[dict] | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                reader = csv.DictReader(f)
                self._history = list(reader)
                self._history_keys = list(reader.fieldnames or [])

    def save(self) -> None:
        if self._history is not None and self.metrics:
            epochs = [float(m["epoch"]) for m in self.metrics if m.get("epoch") is not None]
            start = min(epochs) if epochs else float("inf")
            kept = [r for r in self._history if not r.get("epoch") or float(r["epoch"]) < start]
            header = sorted(set(self._history_keys).union(*self.metrics))
            with atomic_output(self.metrics_file_path, newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header)
                writer.writeheader()
                writer.writerows(kept)
            self.metrics_keys = header
            self._history = None
        super().save()


class HistoryCSVLogger(CSVLogger):
    """``CSVLogger`` that, with ``keep_history=True`` (set on resume), continues an existing
    ``metrics.csv`` instead of deleting it."""

    def __init__(self, *args: Any, keep_history: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.keep_history = keep_history

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.keep_history and rank_zero_only.rank == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return super().experiment
