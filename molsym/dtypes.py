"""The dtype rule, written once: molsym models and graphs run in float32 or float64.

Half precision breaks the neighbour-distance and force math the models rely on, so every
entry point (the dataset, the predictor, the calculator, the trainer, model files, export)
asks :func:`resolve_dtype` and refuses anything else with one :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from molsym.errors import ConfigError

#: Names a user may give (configs, CLI flags) and the torch dtypes they stand for.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
SUPPORTED_DTYPES = frozenset(DTYPES.values())


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (also ``"torch.float64"``, or a torch dtype) -> torch dtype;
    anything else is a :class:`ConfigError`."""
    if isinstance(dtype, torch.dtype) and dtype in SUPPORTED_DTYPES:
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.removeprefix("torch.")]
    raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float64`` -> ``"float64"`` (the spelling of configs and metadata)."""
    return str(dtype).removeprefix("torch.")


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """Floating dtype of the model's parameters (torch's default for a model without any)."""
    return state_dtype(dict(model.named_parameters()))


def state_dtype(state: Mapping[str, Any]) -> torch.dtype:
    """Dtype of the first floating tensor of a state dict (torch's default if none)."""
    return next((t.dtype for t in state.values()
                 if isinstance(t, torch.Tensor) and t.is_floating_point()),
                torch.get_default_dtype())
