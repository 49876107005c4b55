"""molsym: symmetry-aware neural networks for molecular energies, forces and properties."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public names re-exported lazily (importing molsym stays cheap: no torch until used).
_LAZY = {
    "load_model": "molsym.deploy",
    "MolsymCalculator": "molsym.inference.calculator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'molsym' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["MolsymCalculator", "__version__", "load_model"]
