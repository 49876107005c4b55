"""``molsym train ensemble.size=K``: K members, one committee deploy file.

Member k trains like a single run into ``<run>/members/<k>/`` with ``seed = seed + k`` (its
initial weights differ); the data split, its order and every other setting are the run's,
so the members share their training, validation and test structures. The committee
(:class:`molsym.models.EnsembleModel`) is written as ``<run>/model.pt`` and tested on the
test split: ``metrics.json`` holds the committee's errors, ``members/<k>/metrics.json`` each
member's. A member whose ``model.pt`` and ``metrics.json`` exist is reused, so running the
same command again after an interruption trains only the members that are missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from molsym.atomic import write_text_atomic
from molsym.errors import ConfigError

log = logging.getLogger(__name__)


def ensemble_size(cfg: DictConfig) -> int:
    """``ensemble.size`` of the config (1 when absent); :class:`ConfigError` below 1."""
    node = cfg.get("ensemble") or {}
    size = node.get("size", 1) if hasattr(node, "get") else 1
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"ensemble.size must be an integer >= 1, got {size!r}")
    return size


def train_ensemble(cfg: DictConfig, out: str | Path, train_one) -> dict[str, Any]:
    """Train ``ensemble.size`` members with ``train_one(cfg, out)`` and deploy their
    committee; returns the result dict of :func:`molsym.training.run.train`."""
    from molsym.deploy import load_model, save_model
    from molsym.models import EnsembleModel
    from molsym.training.evaluate import evaluate
    from molsym.training.run import build

    if cfg.get("ckpt_path") is not None:
        raise ConfigError("ckpt_path with ensemble.size > 1: run the same command again "
                          "instead; finished members are reused, the others retrain")
    out = Path(out).resolve()
    size = ensemble_size(cfg)
    OmegaConf.resolve(cfg)  # data.seed etc. fixed to the run's seed before members differ
    members = []
    for k in range(size):
        member_out = out / "members" / str(k)
        if (member_out / "model.pt").is_file() and (member_out / "metrics.json").is_file():
            log.info("ensemble member %d: reusing %s", k, member_out / "model.pt")
            members.append(member_out / "model.pt")
            continue
        member_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        member_cfg.seed = int(cfg.seed) + k
        member_cfg.ensemble = {"size": 1}
        if cfg.get("init_from"):  # a committee file: member k starts from member k
            member_cfg.finetune = {**(cfg.get("finetune") or {}), "member": k}
        log.info("ensemble member %d of %d (seed %d) -> %s", k + 1, size, member_cfg.seed,
                 member_out)
        members.append(Path(train_one(member_cfg, member_out)["model"]))
    committee = EnsembleModel.from_models([load_model(p) for p in members]).eval()
    dm = build(cfg.data, "data")
    dm.setup("test")
    metrics: dict = {}
    if len(dm.datasets["test"]) > 0:
        metrics, _ = evaluate(committee, dm.datasets["test"])
    meta = {"members": [str(p.relative_to(out)) for p in members], "test_metrics": metrics,
            "config": OmegaConf.to_container(cfg, resolve=True)}
    path = save_model(committee, out / "model.pt", metadata=meta)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return {"model": str(path), "metrics": metrics, "best_checkpoint": None,
            "energy_shift_refit": None, "is_global_zero": True,
            "members": [str(p) for p in members]}
