"""Reproducible train/validation/test splits.

A split is three lists of indices. Sizes are counts (``int``) or fractions (``float`` in
(0, 1]) of the structures in the file; ``None`` takes what remains. Indices come from one
permutation drawn with ``numpy.random.default_rng(seed)``, so a seed fixes the split. Splits
are saved as JSON (``{"train": [...], "val": [...], "test": [...], ...}``) and can be read
back as an explicit split file.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from molsym.atomic import write_text_atomic
from molsym.errors import ConfigError

_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Indices of each split.

    ``test_source`` is ``"path"`` when the test indices point into the main file and
    ``"test_path"`` when they point into a separate test file.
    """

    train: list[int]
    val: list[int]
    test: list[int] = field(default_factory=list)
    test_source: str = "path"
    seed: int | None = None

    def to_dict(self) -> dict:
        """JSON-able dict (plain ints)."""
        d = asdict(self)
        for name in _NAMES:
            d[name] = [int(i) for i in d[name]]
        return d

    def save(self, path: str | Path) -> None:
        """Write the split as JSON, atomically (creates parent folders)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Splits:
        """Read a split file (JSON with ``train``/``val``/``test`` index lists)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"split file not found: {path}")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"split file {path} is not valid JSON: {err}") from None
        if not isinstance(raw, dict) or "train" not in raw:
            raise ConfigError(f"split file {path} needs at least a 'train' index list")
        lists = {}
        for name in _NAMES:
            values = raw.get(name, [])
            if not isinstance(values, list) or not all(
                isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in values
            ):
                raise ConfigError(f"split file {path}: '{name}' must be a list of integers")
            lists[name] = [int(i) for i in values]
        return cls(**lists, test_source=str(raw.get("test_source", "path")), seed=raw.get("seed"))

    def validate(self, n: int, n_test_file: int | None = None, where: str = "split") -> None:
        """Raise :class:`ConfigError` for indices out of range, repeated or in two splits."""
        seen: set[int] = set()
        for name in _NAMES:
            idx = getattr(self, name)
            size = n_test_file if name == "test" and self.test_source == "test_path" else n
            if size is None:
                raise ConfigError(f"{where}: test indices point into a test file, none given")
            bad = [i for i in idx if i < 0 or i >= size]
            if bad:
                raise ConfigError(
                    f"{where}: {name} index {bad[0]} out of range for {size} structures"
                )
            if len(set(idx)) != len(idx):
                raise ConfigError(f"{where}: {name} has repeated indices")
            if name == "test" and self.test_source == "test_path":
                continue
            overlap = seen.intersection(idx)
            if overlap:
                raise ConfigError(f"{where}: index {min(overlap)} is in two splits")
            seen.update(idx)


def resolve_size(value: int | float | None, n: int, name: str) -> int | None:
    """A count or a fraction of ``n`` -> a count (``None`` stays ``None``).

    Fractions are rounded to the nearest integer. Raises :class:`ConfigError` for negative
    values or fractions above 1.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a count, a fraction or None, got {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise ConfigError(f"{name} must not be negative, got {value}")
        return int(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} as a fraction must lie in [0, 1], got {value}")
    return int(round(float(value) * n))


def random_split(
    n: int,
    num_train: int | float | None = None,
    num_val: int | float | None = 0.05,
    num_test: int | float | None = None,
    seed: int = 0,
    test_file_size: int | None = None,
) -> Splits:
    """Draw a split of ``n`` structures.

    ``None`` sizes: if ``num_train`` is None it takes what remains (and a None ``num_test`` is
    0); if only ``num_test`` is None it takes what remains. With ``test_file_size`` the test
    set is all of a separate test file of that many structures (``num_test`` must be None/0).

    Raises:
        ConfigError: the sizes ask for more than ``n`` structures.
    """
    n_train = resolve_size(num_train, n, "num_train")
    n_val = resolve_size(num_val, n, "num_val") or 0
    n_test = resolve_size(num_test, n, "num_test")
    separate_test = test_file_size is not None
    if separate_test and n_test:
        raise ConfigError("num_test must be None or 0 when a separate test file is given")
    if n_train is None:
        n_test = n_test or 0
        n_train = n - n_val - n_test
    elif n_test is None:
        n_test = 0 if separate_test else n - n_train - n_val
    if n_train < 0 or n_test < 0 or n_train + n_val + n_test > n:
        asked = [f"{k}={v}" for k, v in (("num_train", num_train), ("num_val", num_val),
                                          ("num_test", num_test)) if v is not None]
        raise ConfigError(
            f"split sizes {' '.join(asked)} ask for more structures than the data has: "
            f"{_asked(n_train, n_val, n_test, n)}; lower them, or give fractions "
            "(e.g. num_train=0.9 num_val=0.05 num_test=0.05)"
        )
    if n_train == 0:
        raise ConfigError(f"split leaves no training structure ({n} structures, {n_val} val)")
    perm = np.random.default_rng(seed).permutation(n)
    train = sorted(perm[:n_train].tolist())
    val = sorted(perm[n_train : n_train + n_val].tolist())
    test = sorted(perm[n_train + n_val : n_train + n_val + n_test].tolist())
    if separate_test:
        test = list(range(test_file_size))
    return Splits(train, val, test, "test_path" if separate_test else "path", seed)


def _asked(n_train: int, n_val: int, n_test: int, n: int) -> str:
    """``"950 train + 50 val = 1000"``; when train is the (negative) rest, val + test alone."""
    if n_train < 0:  # train takes what remains: val + test leave nothing
        parts = [f"{n_val} val"] + ([f"{n_test} test"] if n_test > 0 else [])
        return f"{' + '.join(parts)} = {n_val + n_test} leave no training structure of {n}"
    parts = [f"{n_train} train", f"{n_val} val"] + ([f"{n_test} test"] if n_test > 0 else [])
    return f"{' + '.join(parts)} = {n_train + n_val + max(n_test, 0)} > {n}"
