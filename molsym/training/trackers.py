"""Experiment trackers next to the CSV log: Weights & Biases and MLflow (Lightning's loggers).

``logger=wandb`` and ``logger=mlflow`` (molsym/configs/logger/) build them through these
factories, which say which extra to install when the package is missing and give MLflow a
local store in the run dir when no tracking server is named.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from molsym.errors import ConfigError


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"logger={extra} needs the {module} package: "
                          f'pip install "molsym[{extra}]"')


def wandb_logger(save_dir: str, offline: bool = False, **kwargs: Any):
    """``WandbLogger`` writing under ``save_dir/wandb``; ``offline``: a local run only
    (``wandb sync`` uploads it later), also the case with ``WANDB_MODE=offline``."""
    _require("wandb", "wandb")
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(save_dir=save_dir, offline=offline, **kwargs)


def mlflow_logger(save_dir: str, tracking_uri: str | None = None, **kwargs: Any):
    """``MLFlowLogger`` to ``tracking_uri`` (a server, ``sqlite:///mlflow.db``, ...); None: a
    local file store in ``save_dir``. MLflow 3 keeps its file store in maintenance mode and
    refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``, which this sets for the process when
    it is not set (a database store needs the full ``mlflow`` package with SQLAlchemy)."""
    _require("mlflow", "mlflow")
    from pytorch_lightning.loggers import MLFlowLogger

    if not tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tracking_uri = Path(save_dir).resolve().as_uri()
    return MLFlowLogger(tracking_uri=tracking_uri, save_dir=save_dir, **kwargs)


def finish(loggers: list) -> None:
    """End the tracker runs of ``loggers``: Lightning leaves a W&B run open until the process
    exits, so a sweep's next job (same process) would log into it, and an offline run file
    would hold only its header until then."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and logger._experiment is not None:
            logger.experiment.finish()
