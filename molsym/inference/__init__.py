"""Inference: a trained model (a deploy file, a pretrained name or a model object) on new
molecules.

- :mod:`molsym.inference.inputs`: SMILES strings, structures and files to entries (one per
  molecule or frame; bad records become error rows);
- :mod:`molsym.inference.predictor`: :class:`Predictor` and :func:`predict` (batches, units,
  the result table);
- :mod:`molsym.inference.extrapolation`: warnings for inputs outside the training data;
- :mod:`molsym.inference.calculator`: :class:`MolsymCalculator`, the ASE calculator.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names re-exported lazily (importing the package does not import torch).
_LAZY = {
    "predict": "molsym.inference.predictor",
    "Predictor": "molsym.inference.predictor",
    "MolsymCalculator": "molsym.inference.calculator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'molsym.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["MolsymCalculator", "Predictor", "predict"]
