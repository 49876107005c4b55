"""Data-set recipes for the Hydra configs: where the files are, from a data root.

``data_root`` is ``$MOLSYM_DATA_ROOT`` when set, else the ``data/`` folder of the source
checkout (which bundles rMD17 ethanol), else ``./data``. Each recipe returns a
:class:`molsym.data.datamodule.MolDataModule`; its remaining keyword arguments go there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from molsym.errors import ConfigError

log = logging.getLogger(__name__)

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


#: Split of a ``data.path`` given without sizes: train (the rest) / val / test fractions.
FILE_FRACTIONS = (0.9, 0.05, 0.05)


def bundled_or_file(path: str | None, data_root: str, test_path: str | None = None,
                    num_train: int | float | None = None, num_val: int | float | None = None,
                    num_test: int | float | None = None, **kwargs: Any):
    """``path`` when given, else the bundled rMD17 ethanol split 01 (train 950 / val 50 from
    the train file, test on the test file).

    Sizes left null: the bundled set takes 950 / 50; a given ``path`` is split 90 / 5 / 5 %
    train / val / test (:data:`FILE_FRACTIONS`; train takes the rest, so rounding never asks
    for too many), a null ``num_val`` is 5 % and a null ``num_test`` is 5 % unless
    ``num_train`` or ``test_path`` is given (then the test set is the rest, or ``test_path``).
    What was filled in is logged. A ``split_file`` overrides all sizes.
    """
    from molsym.data.datamodule import MolDataModule

    if path is None:
        train, test = rmd17_paths("ethanol", data_root, 1)
        path, test_path = str(train), str(test) if test_path is None else test_path
        num_train = 950 if num_train is None else num_train
        num_val = 50 if num_val is None else num_val
    elif kwargs.get("split_file") is None:
        filled = []
        if num_val is None:
            num_val = FILE_FRACTIONS[1]
            filled.append("data.num_val")
        if num_test is None and num_train is None and test_path is None:
            num_test = FILE_FRACTIONS[2]
            filled.append("data.num_test")
        if filled:
            log.info("data: %s not set: %s of %s each, training on the rest (90/5/5 %% "
                     "train/val/test when no size is set)", " and ".join(filled), "5 %", path)
    return MolDataModule(path=str(path), test_path=test_path, num_train=num_train,
                         num_val=num_val, num_test=num_test, **kwargs)
