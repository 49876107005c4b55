"""Where molsym keeps what it builds or fetches once: graph caches, downloaded data sets.

A small module of its own so that the dataset and the readers (QM9's download) both ask it,
and neither imports the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$MOLSYM_CACHE_DIR`` if set, else ``~/.cache/molsym``."""
    env = os.environ.get("MOLSYM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "molsym"
