"""Data-set recipes for the Hydra configs: where the files are, from a data root.

``data_root`` is ``$MOLSYM_DATA_ROOT`` when set, else the ``data/`` folder of the source
checkout (which bundles rMD17 ethanol), else ``./data``. Each recipe returns a
:class:`molsym.data.datamodule.MolDataModule`; its remaining keyword arguments go there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from molsym.errors import ConfigError

BUNDLED = "rmd17_ethanol"


def default_data_root() -> str:
    """``$MOLSYM_DATA_ROOT``, else ``<checkout>/data`` when it exists, else ``./data``."""
    env = os.environ.get("MOLSYM_DATA_ROOT")
    if env:
        return str(Path(env).expanduser())
    checkout = Path(__file__).resolve().parents[2] / "data"
    return str(checkout if checkout.is_dir() else Path("data").resolve())


def register_resolvers() -> None:
    """Register ``${molsym.data_root:}`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver("molsym.data_root"):
        OmegaConf.register_new_resolver("molsym.data_root", default_data_root)


def _first_existing(candidates: list[Path], what: str) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError(
        f"{what} not found (tried {tried}); set data_root=... or $MOLSYM_DATA_ROOT"
    )


def rmd17_paths(molecule: str, data_root: str, split: int = 1) -> tuple[Path, Path]:
    """Train and test npz of an rMD17 molecule under ``data_root``.

    Looks for ``rmd17/rmd17_<molecule>_<train|test>_<split:02d>.npz`` (the layout of the
    shared reference data) and ``rmd17_<molecule>/...`` (the bundled layout).
    """
    root = Path(data_root).expanduser()
    out = []
    for part in ("train", "test"):
        name = f"rmd17_{molecule}_{part}_{int(split):02d}.npz"
        out.append(_first_existing(
            [root / "rmd17" / name, root / f"rmd17_{molecule}" / name],
            f"rMD17 {molecule} {part} file",
        ))
    return out[0], out[1]


def rmd17(molecule: str, data_root: str, split: int = 1, **kwargs: Any):
    """rMD17 ``molecule``: train/val from ``train_<split>``, test on ``test_<split>``."""
    from molsym.data.datamodule import MolDataModule

    train, test = rmd17_paths(molecule, data_root, split)
    return MolDataModule(path=str(train), test_path=str(test), **kwargs)


def bundled_or_file(path: str | None, data_root: str, test_path: str | None = None,
                    **kwargs: Any):
    """``path`` when given (split into train/val/test, or tested on ``test_path``); None
    means the bundled rMD17 ethanol split 01 (train 950 / val 50 from the train file, test
    on the test file)."""
    from molsym.data.datamodule import MolDataModule

    if path is None:
        train, test = rmd17_paths("ethanol", data_root, 1)
        path, test_path = str(train), str(test) if test_path is None else test_path
    return MolDataModule(path=str(path), test_path=test_path, **kwargs)
