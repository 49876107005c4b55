"""Retraining: a round's committee on every label so far, warm-started from the last one.

The round's training config is the run's config (``train.yaml`` as composed by
``molsym learn``) without the loop's own keys, on a snapshot of ``labels.extxyz``, trained by
:func:`molsym.training.run.train` like ``molsym train ensemble.size=K``. With a previous
committee it is ``init_from`` (``molsym train init_from=``: member k starts from member k,
energy shifts refit to the labels first).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

#: Keys of the ``molsym learn`` config that are not training settings.
LOOP_KEYS = ("learn", "oracle", "smiles")


def training_config(cfg: DictConfig, labels: Path, previous: Path | None = None) -> DictConfig:
    """The training part of ``cfg`` with ``data.path = labels`` and ``init_from`` the
    committee file ``previous`` (None: from scratch)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in LOOP_KEYS:
        plain.pop(key, None)
    train_cfg = OmegaConf.create(plain)
    train_cfg.data.path = str(labels)
    train_cfg.init_from = None if previous is None else str(previous)
    return train_cfg


def retrain(cfg: DictConfig, labels: Path, out: Path, previous: Path | None = None) -> Path:
    """Train the committee of ``cfg`` on a copy of ``labels`` into ``out`` (``out/model.pt``),
    warm-started from the committee file ``previous`` when given. A finished
    ``out/model.pt`` is reused, and so are the finished members of an interrupted training.
    Returns the committee's deploy file."""
    from molsym.training.run import train

    model = out / "model.pt"
    if model.is_file():
        return model
    out.mkdir(parents=True, exist_ok=True)
    snapshot = out / "labels.extxyz"
    if not snapshot.is_file():
        tmp = snapshot.with_suffix(".extxyz.tmp")
        shutil.copyfile(labels, tmp)
        tmp.replace(snapshot)
    return Path(train(training_config(cfg, snapshot, previous), out)["model"])
