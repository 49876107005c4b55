"""The model an inference entry point runs: loaded from what the user names, copied for
inference (the caller's object is never changed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch


def load_model_any(model: Any) -> torch.nn.Module:
    """A model object as is; a deploy-file path or a pretrained name through ``load_model``."""
    if isinstance(model, torch.nn.Module):
        return model
    if isinstance(model, (str, Path)):
        from molsym.deploy import load_model

        return load_model(model)
    raise TypeError(f"model must be a torch.nn.Module, a model file or a pretrained name, "
                    f"not {type(model).__name__}")


def inference_copy(module: torch.nn.Module, device: torch.device,
                   dtype: torch.dtype) -> torch.nn.Module:
    """A private eval-mode copy of ``module`` on ``device`` in ``dtype``, parameter gradients
    off (forces need d/dpos only); the caller's model is left as it was."""
    model = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
