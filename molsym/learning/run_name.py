"""The default run folder of ``molsym learn``: named after its SMILES and oracle, so that the
same command finds the same folder again and resumes it (``hydra.run.dir`` overrides it)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from omegaconf import OmegaConf

RESOLVER = "molsym.learn_run_name"


def run_name(smiles: Any, oracle: Any) -> str:
    """``<letters and digits of the SMILES, at most 32>-<oracle class>-<8 hex of a hash of
    both>``, e.g. ``CCO-emt-3f2a9c1b`` (SMILES hold ``/``, ``#``, ``\\`` that a path cannot)."""
    text = ",".join(str(s) for s in smiles) if isinstance(smiles, (list, tuple)) or (
        hasattr(smiles, "__iter__") and not isinstance(smiles, str)) else str(smiles)
    oracle_name = str(oracle).rsplit(".", 1)[-1].removesuffix("Oracle").lower() or "oracle"
    slug = re.sub(r"[^A-Za-z0-9]+", "", text)[:32] or "smiles"
    digest = hashlib.sha1(f"{text}|{oracle}".encode()).hexdigest()[:8]
    return f"{slug}-{oracle_name}-{digest}"


def register() -> None:
    """Register ``${molsym.learn_run_name:smiles,oracle_target}`` (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, run_name)
