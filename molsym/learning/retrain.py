"""Retraining: a round's committee on every label so far, warm-started from the last one.

The round's training config is the run's config (``train.yaml`` as composed by
``molsym learn``) without the loop's own keys, on a snapshot of ``labels.extxyz``, trained by
:func:`molsym.training.run.train` like ``molsym train ensemble.size=K``. Member ``k`` of the
new committee starts from member ``k`` of the previous one when this molsym's training knows
``init_from`` (a deploy file to start from); otherwise it trains from scratch.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: Keys of the ``molsym learn`` config that are not training settings.
LOOP_KEYS = ("learn", "oracle", "smiles")


def training_config(cfg: DictConfig, labels: Path) -> DictConfig:
    """The training part of ``cfg`` with ``data.path = labels``."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in LOOP_KEYS:
        plain.pop(key, None)
    train_cfg = OmegaConf.create(plain)
    train_cfg.data.path = str(labels)
    return train_cfg


def warm_start_supported(cfg: DictConfig) -> bool:
    """Whether the training config has ``init_from`` (start from a deploy file)."""
    return "init_from" in cfg


def retrain(cfg: DictConfig, labels: Path, out: Path, previous: Path | None = None) -> Path:
    """Train the committee of ``cfg`` on a copy of ``labels`` into ``out`` (``out/model.pt``),
    members warm-started from ``previous/members/<k>/model.pt`` when given and supported.
    A finished ``out/model.pt`` is reused; finished members of an interrupted training are
    reused too. Returns the committee's deploy file."""
    from molsym.training.ensemble_run import ensemble_size
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
    train_cfg = training_config(cfg, snapshot)
    warm = previous is not None and warm_start_supported(train_cfg)
    if previous is not None and not warm:
        log.info("warm start: this molsym's training has no init_from; training from scratch")

    def member_config(member_cfg: DictConfig, member_out: Path) -> DictConfig:
        if warm:
            start = Path(previous) / "members" / Path(member_out).name / "model.pt"
            single = Path(previous) / "model.pt"
            member_cfg.init_from = str(start if start.is_file() else single)
        return member_cfg

    if ensemble_size(train_cfg) > 1:
        from molsym.training.ensemble_run import train_ensemble

        result = train_ensemble(train_cfg, out, lambda c, o: train(member_config(c, o), o))
    else:
        result = train(member_config(train_cfg, out / "members" / "0"), out)
    return Path(result["model"])
