"""Save and load the deploy file ``model.pt``.

The file is a plain dict that ``torch.load(path, weights_only=True)`` reads::

    {"format_version": 1, "molsym_version": "0.1.0",
     "model_class": "equivariant",          # a key of molsym.models.DEPLOYABLE_CLASSES
     "config": {...},                         # constructor kwargs (JSON-able)
     "state_dict": {name: tensor},
     "cutoff": 5.0, "elements": [1, 6, 8],
     "units": {"energy": "eV", "forces": "eV/Angstrom", ...},
     "metadata": {...}}                       # optional: statistics, metrics, training config

Loading builds the model from the allowlist :data:`molsym.models.DEPLOYABLE_CLASSES` (the
architectures and ``ensemble``, a committee whose config lists its members); nothing named
inside the file is ever imported, instantiated or called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from molsym import __version__
from molsym import units as units_table
from molsym.atomic import atomic_path
from molsym.dtypes import SUPPORTED_DTYPES, resolve_dtype, state_dtype
from molsym.errors import ConfigError
from molsym.models import class_name

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_class", "config", "state_dict")
DEFAULT_UNITS = units_table.DEPLOY_UNITS


def _plain(value: Any) -> Any:
    """JSON round trip: only dicts, lists, strings, numbers, bools and None survive."""
    return json.loads(json.dumps(value))


def save_model(
    model: nn.Module,
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    units: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (an allowlisted molsym model) as a deploy file, atomically.

    ``metadata`` must be JSON-able (e.g. dataset statistics, test metrics, the run config).
    Tensors are saved on the CPU in the model's dtype.
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "molsym_version": __version__,
        "model_class": class_name(model),
        "config": _plain(model.config()),
        "state_dict": state,
        "cutoff": float(model.cutoff),
        "elements": [int(z) for z in model.elements],
        "outputs": [str(o) for o in getattr(model, "outputs", [])],
        "units": dict(units or DEFAULT_UNITS),
        "metadata": _plain(metadata or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The checked dict of a deploy file (``weights_only=True``: data only); ``path`` may also
    be the name of a bundled pretrained model (``"qm9"``).

    Raises:
        ConfigError: missing file, not a molsym deploy file, or a newer format version.
    """
    from molsym.pretrained import resolve_model_path

    path = resolve_model_path(path)  # a file as it is, a bundled model by name ("qm9")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a molsym deploy file ({first})") from None
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise ConfigError(f"{path}: not a molsym deploy file (needs keys {list(REQUIRED_KEYS)})")
    version = payload["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ConfigError(
            f"{path}: deploy format version {version!r} is not supported by molsym "
            f"{__version__} (supports 1..{FORMAT_VERSION})"
        )
    _check_fields(path, payload)
    return payload


def _element_list_problem(value: Any) -> str:
    """Why ``value`` is not a list of atomic numbers ('' when it is)."""
    if not isinstance(value, (list, tuple)) or not value:
        return f"must be a non-empty list of atomic numbers, got {type(value).__name__} {value!r}"
    bad = [z for z in value if isinstance(z, bool) or not isinstance(z, int) or not 1 <= z <= 118]
    return f"holds {bad[:3]!r}, not atomic numbers 1..118" if bad else ""


def _check_fields(path: Path, payload: dict[str, Any]) -> None:
    """Types of ``elements``, ``cutoff`` and the weights' dtype, so that a broken or foreign
    file is a :class:`ConfigError` here and not a traceback in a predictor."""
    config = payload["config"]
    for where, holder in (("elements", payload), ("config.elements", config)):
        if isinstance(holder, dict) and "elements" in holder:
            problem = _element_list_problem(holder["elements"])
            if problem:
                raise ConfigError(f"{path}: '{where}' {problem}")
    cutoff = payload.get("cutoff", 1.0)
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not cutoff > 0:
        raise ConfigError(f"{path}: 'cutoff' must be a positive number, got {cutoff!r}")
    state = payload["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: 'state_dict' must be a dict of tensors")
    dtypes = {t.dtype for t in state.values()
              if isinstance(t, torch.Tensor) and t.is_floating_point()}
    unsupported = sorted(str(d).removeprefix("torch.") for d in dtypes - SUPPORTED_DTYPES)
    if unsupported:
        raise ConfigError(f"{path}: weights in {', '.join(unsupported)}; molsym models run in "
                          f"float32 or float64 (convert the state_dict tensors to float32)")


def load_model(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> nn.Module:
    """Rebuild a model from a deploy file or a pretrained name (``"qm9"``); returned in eval
    mode.

    The class comes from :data:`molsym.models.DEPLOYABLE_CLASSES` by the name in the file; an
    unknown name raises :class:`ConfigError`. The model comes back in the dtype it was saved
    in; ``dtype`` (e.g. ``torch.float64``) converts the floating-point weights after loading.
    """
    from molsym.models import DEPLOYABLE_CLASSES
    from molsym.models.base import saved_config
    from molsym.models.ensemble import EnsembleModel

    payload = read_model_file(path)
    name = payload["model_class"]
    cls = DEPLOYABLE_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(
            f"{path}: unknown model class {name!r}; molsym knows {sorted(DEPLOYABLE_CLASSES)}"
        )
    config = payload["config"]
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: 'config' must be a dict of constructor arguments")
    state = payload["state_dict"]
    if name != EnsembleModel.model_name:  # a committee completes its members' configs
        config = saved_config(config)
    if "dipole_moment_from_vector" not in config and any(
        k.startswith("property_heads.dipole_moment.") for k in state
    ):  # saved before dipole_moment came from the dipole vector: its scalar head
        config = {**config, "dipole_moment_from_vector": False}
    saved_dtype = state_dtype(state)
    try:
        model = cls(**config).to(saved_dtype)  # weights load without rounding
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a foreign config can fail any way in a
        # constructor (ZeroDivisionError, ValueError, molsym's own ConfigError)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: cannot rebuild {name!r} from the file: {first}") from None
    model = model.to(map_location)
    if dtype is not None:
        model = model.to(resolve_dtype(dtype))
    return model.eval()
