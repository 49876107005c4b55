"""The model an inference entry point runs: loaded from what the user names, copied for
inference (the caller's object is never changed)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from molsym.dtypes import model_dtype, resolve_dtype
from molsym.errors import ConfigError
from molsym.models.compiled import for_inference


class InferenceModel(NamedTuple):
    """What :func:`prepare_model` gives an entry point."""

    module: torch.nn.Module  #: the model as given or loaded (its metadata, elements, outputs)
    model: torch.nn.Module  #: the private eval-mode copy on ``device`` in ``dtype``
    forward: Callable  #: ``model``, or its ``torch.compile`` wrapper
    device: torch.device
    dtype: torch.dtype


def model_facts(module: torch.nn.Module) -> tuple[float, list[int], list[str]]:
    """The cutoff (Angstrom), elements (atomic numbers) and outputs of a molsym model."""
    return float(module.cutoff), [int(z) for z in module.elements], list(module.outputs)


def prepare_model(model: Any, device: str | torch.device = "cpu",
                  dtype: str | torch.dtype | None = None,
                  compile: bool | str = "auto") -> InferenceModel:
    """The model of the predictor and the calculator: ``model`` (a module, a deploy file or a
    pretrained name) loaded, copied onto ``device`` in ``dtype`` (None: the model's own) and
    compiled as asked (:func:`molsym.models.compiled.for_inference`: True, False or "auto",
    large graphs only). A CUDA device that is not there is a :class:`ConfigError`."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    wanted = resolve_dtype(dtype) if dtype is not None else None
    module = load_model_any(model)
    dtype = wanted if wanted is not None else model_dtype(module)
    private = inference_copy(module, device, dtype)
    return InferenceModel(module, private, for_inference(private, compile), device, dtype)


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
