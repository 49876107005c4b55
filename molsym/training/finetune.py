"""Fine-tuning: ``molsym train init_from=model.pt`` starts from a deploy file.

What a fine-tune takes from the file and what from the config:

* the architecture (class and constructor arguments) comes from the file; a model key of the
  config that the user set (``model=...``, ``model.num_channels=...``; every key when
  ``train`` is called in-process without overrides) and that contradicts the file is a
  :class:`ConfigError` naming the key. ``cutoff`` (the graphs are built with it) and
  ``targets`` (the model's outputs) must always agree with the file.
* the weights: every tensor copied; per-element tensors (the embedding rows, the
  per-element energy shift and scale, each layer's per-element channel mixing) copied
  element by element, and elements that only
  the training data has get fresh rows (a new embedding row, the scale of the file's
  config, the training set's least-squares reference energy as shift).
* the per-element energy shifts are refit to the new training set before the first step
  (``finetune.refit_energy_shift``, on by default): the file's shifts belong to the labels it
  was trained on (e.g. GFN2-xTB, whose energy zero differs from DFT's by eV per atom), and
  the loss alone would move them by about one learning rate per step. The usual refit after
  training (``refit_energy_shift``) follows as in any run. Forces never depend on the
  shifts.
* normalisation constants of the file (``avg_num_neighbors``, ``energy_scale``,
  ``property_mean``/``property_std``) are kept: the weights were trained with them.
* ``finetune.freeze``: name prefixes of parameters kept fixed (``embedding``,
  ``interactions.0``, ``radial``, ...); ``finetune.lr``: the learning rate of the fine-tune
  (null: ``optimizer.lr``).
* a committee file: with ``ensemble.size`` equal to its size, member k starts from member k;
  ``finetune.member=k`` fine-tunes one member alone; anything else is refused.

The file is read as data (``weights_only=True``) and rebuilt from the allowlist
:data:`molsym.models.DEPLOYABLE_CLASSES` (:func:`molsym.deploy.model_file.read_model_file`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from ase.data import chemical_symbols
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from molsym.errors import ConfigError
from molsym.models.base import saved_config

log = logging.getLogger(__name__)

#: Constructor arguments that describe the data a model was trained on, not its architecture:
#: taken from the file (normalisation) or extended (elements), never compared.
DATA_DERIVED = ("elements", "atomic_energies", "avg_num_neighbors", "energy_scale",
                "property_mean", "property_std", "closest_pairs")
#: State-dict entries with one row per element (aligned with ``model.elements``).
PER_ELEMENT = ("embedding.weight", "atomic_energy_shift", "atomic_energy_scale",
               "atomic_numbers")
#: ... and the per-element weights of each layer's products (``species_products``; a new
#: element's row stays zero: the shared weights).
PER_ELEMENT_PATTERN = re.compile(r"products\.\d+\.element_weights")
#: State-dict entries with one slice per element along axis 1: the per-element channel
#: mixing of each layer (``species_linear``; a new element's slice stays zero, the identity).
PER_ELEMENT_AXIS_1 = re.compile(r"species_mixing\.\d+\.weight")


def element_axis(name: str) -> int | None:
    """The axis of the state-dict entry ``name`` that runs over the elements (None: none)."""
    if name in PER_ELEMENT or PER_ELEMENT_PATTERN.fullmatch(name):
        return 0
    return 1 if PER_ELEMENT_AXIS_1.fullmatch(name) else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_init_file(path: str) -> dict[str, Any]:
    """The checked payload of the deploy file ``path`` (data only, allowlisted class)."""
    from molsym.deploy.model_file import read_model_file
    from molsym.models import DEPLOYABLE_CLASSES

    payload = read_model_file(path)
    if payload["model_class"] not in DEPLOYABLE_CLASSES:
        raise ConfigError(f"init_from: {path}: unknown model class {payload['model_class']!r}; "
                          f"molsym knows {sorted(DEPLOYABLE_CLASSES)}")
    return payload


def member_specs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"model_class", "config"}]``: one entry, or one per member of a committee file
    (configs completed by :func:`~molsym.models.base.saved_config`)."""
    if payload["model_class"] == "ensemble":
        members = payload["config"].get("members") if isinstance(payload["config"], dict) else None
        if not isinstance(members, list) or not members:
            raise ConfigError("init_from: the committee file lists no members")
    else:
        members = [{"model_class": payload["model_class"], "config": payload["config"]}]
    return [{**spec, "config": saved_config(spec["config"])} for spec in members]


def member_state(payload: dict[str, Any], member: int | None) -> dict[str, torch.Tensor]:
    """The state dict of the model (``member`` None) or of committee member ``member``."""
    state = payload["state_dict"]
    if member is None:
        return state
    prefix = f"members.{member}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _choose_member(path: str, payload: dict[str, Any], cfg: DictConfig) -> int | None:
    """Which member of a committee file this run starts from (None: not a committee)."""
    from molsym.training.ensemble_run import ensemble_size

    size = ensemble_size(cfg)
    member = (cfg.get("finetune") or {}).get("member")
    count = len(member_specs(payload))
    if payload["model_class"] != "ensemble":
        if member is not None:
            raise ConfigError(f"init_from: {path} is a single model, not a committee; drop "
                              f"finetune.member={member}")
        if size > 1:
            raise ConfigError(
                f"init_from: {path} is a single model but ensemble.size={size}: the members "
                "would start identical and their spread would not measure uncertainty; "
                f"give a committee of {size} (molsym ensemble) or train ensemble.size=1")
        return None
    if member is not None:
        if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < count:
            raise ConfigError(f"finetune.member={member!r}: {path} is a committee of {count} "
                              f"members (0..{count - 1})")
        return member
    if size != count:
        raise ConfigError(
            f"init_from: {path} is a committee of {count} members; fine-tune it with "
            f"ensemble.size={count} (member k starts from member k), or one member alone "
            f"with finetune.member=K")
    return None  # the ensemble run sets finetune.member per member


def _model_class_path(name: str) -> str:
    from molsym.models import MODEL_CLASSES

    cls = MODEL_CLASSES[name]
    return f"{cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}"


def _set_model_keys(overrides: Sequence[str] | None) -> list[str] | None:
    """The ``model`` keys the command line sets (None: all of them)."""
    from molsym.training.resume import _override_keys

    if overrides is None:
        return None
    keys = _override_keys(overrides)
    if keys is None or "model" in keys:
        return None
    return [k.split(".", 1)[1] for k in keys if k.startswith("model.")]


def _check_architecture(path: str, cfg: DictConfig, spec: dict[str, Any],
                        set_keys: list[str] | None) -> None:
    from hydra.utils import get_class

    name, config = spec["model_class"], spec["config"]
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if abs(float(cfg.cutoff) - float(config.get("cutoff", cfg.cutoff))) > 1e-9:
        raise ConfigError(f"init_from: {path} was trained with cutoff={config['cutoff']}, the "
                          f"config says cutoff={cfg.cutoff}; set cutoff={config['cutoff']}")
    outputs = list(config.get("outputs") or [])
    if list(cfg.targets) != outputs:
        raise ConfigError(f"init_from: {path} has outputs {outputs}, the config trains "
                          f"targets={list(cfg.targets)}; set targets=[{','.join(outputs)}]")
    if set_keys is None or "_target_" in set_keys:
        target = model_cfg.get("_target_")
        try:
            same = get_class(str(target)) is get_class(_model_class_path(name))
        except Exception:  # noqa: BLE001 - hydra wraps import errors in varied types
            same = False
        if not same:
            raise ConfigError(f"init_from: {path} holds a {name!r} model, the config asks for "
                              f"model._target_={target}; drop the model choice (the "
                              "architecture comes from the file)")
    for key in sorted(model_cfg if set_keys is None else set_keys):
        if key in DATA_DERIVED or key == "_target_" or key not in model_cfg:
            continue
        value = model_cfg[key]
        if value is None or key in ("cutoff", "outputs"):
            continue
        if key not in config:
            raise ConfigError(f"init_from: model.{key} is not an argument of the {name!r} "
                              f"model in {path}")
        if value != config[key]:
            raise ConfigError(
                f"init_from: model.{key}={value!r} contradicts {path}, which has "
                f"{key}={config[key]!r}; drop model.{key} (the architecture comes from the "
                "file)")


def adopt_architecture(cfg: DictConfig, overrides: Sequence[str] | None) -> DictConfig:
    """Check ``cfg`` against ``cfg.init_from`` and return it with the file's architecture in
    ``cfg.model`` (class and constructor arguments, data-derived ones left to
    :func:`start_model`), so that ``config.yaml`` records the model that is trained.

    Raises:
        ConfigError: unreadable file, a contradicting model key, cutoff or targets, or a
            committee file that does not fit ``ensemble.size`` / ``finetune.member``.
    """
    path = str(cfg.init_from)
    payload = read_init_file(path)
    _choose_member(path, payload, cfg)
    specs = member_specs(payload)
    set_keys = _set_model_keys(overrides)
    for spec in specs:
        _check_architecture(path, cfg, spec, set_keys)
    first = {k: v for k, v in specs[0]["config"].items() if k not in DATA_DERIVED}
    for k, spec in enumerate(specs[1:], 1):
        other = {k2: v for k2, v in spec["config"].items() if k2 not in DATA_DERIVED}
        if other != first or spec["model_class"] != specs[0]["model_class"]:
            differ = sorted(k2 for k2 in set(first) | set(other) if first.get(k2) != other.get(k2))
            raise ConfigError(f"init_from: the members of the committee {path} differ in "
                              f"architecture (member {k}: {differ or ['model_class']}); "
                              "fine-tune them one by one with finetune.member=K")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = OmegaConf.create({
            "_target_": _model_class_path(specs[0]["model_class"]),
            **{k: v for k, v in first.items() if k not in ("cutoff", "outputs")},
            "cutoff": cfg.cutoff, "outputs": list(cfg.targets),
            **{k: cfg.model.get(k) for k in DATA_DERIVED if k in cfg.model},
        })
    return cfg


def _new_elements(file_elements: list[int], wanted: list[int]) -> list[int]:
    return sorted(set(file_elements) | {int(z) for z in wanted})


def start_elements(cfg: DictConfig, stats: dict) -> list[int]:
    """Elements of the fine-tuned model: the file's and those of ``model.elements`` (else of
    the training split), sorted."""
    payload = read_init_file(str(cfg.init_from))
    spec = member_specs(payload)[0]
    wanted = list(cfg.model.get("elements") or stats["elements"])
    return _new_elements(list(spec["config"]["elements"]), wanted)


def start_model(cfg: DictConfig, stats: dict) -> tuple[nn.Module, dict[str, Any]]:
    """The model a fine-tune starts from: the file's (member ``finetune.member`` of a
    committee) with the training data's new elements added (fresh rows) and every other
    weight copied. Returns the model (in the file's dtype) and a record for the metadata."""
    from molsym.models import MODEL_CLASSES

    path = str(cfg.init_from)
    payload = read_init_file(path)
    member = (cfg.get("finetune") or {}).get("member")
    spec = member_specs(payload)[member if member is not None else 0]
    if payload["model_class"] == "ensemble" and member is None:
        raise ConfigError(f"init_from: {path} is a committee; give finetune.member=K")
    state = member_state(payload, member if payload["model_class"] == "ensemble" else None)
    config = dict(spec["config"])
    old = [int(z) for z in config["elements"]]
    elements = _new_elements(old, list(cfg.model.get("elements") or stats["elements"]))
    added = [z for z in elements if z not in old]
    shifts = dict(zip(old, state["atomic_energy_shift"].tolist(), strict=True))
    e0 = dict(zip(stats["elements"], stats.get("atomic_energies") or [], strict=False))
    config["elements"] = elements
    config["atomic_energies"] = [float(shifts.get(z, e0.get(z, 0.0))) for z in elements]
    if config.get("closest_pairs") is not None:  # the floor covers the new data's pairs too
        config["closest_pairs"] = closest_of_both(config["closest_pairs"],
                                                  stats.get("closest_pairs") or {})
    cls = MODEL_CLASSES[spec["model_class"]]
    dtype = next(t.dtype for t in state.values() if t.is_floating_point())
    try:
        model = cls(**config).to(dtype)
    except Exception as exc:  # noqa: BLE001 - a foreign config can fail in many ways
        raise ConfigError(f"init_from: {path}: cannot rebuild the model: {_first_line(exc)}"
                          ) from None
    _copy_weights(model, state, old, elements, path)
    if added:
        log.info("init_from %s: new element(s) %s get fresh embeddings", path,
                 [chemical_symbols[z] for z in added])
    record = {"init_from": path, "member": member, "elements_added": added,
              "elements_from_file": old}
    return model, record


def closest_of_both(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """The shortest distance of each element pair over two ``closest_pairs`` tables."""
    return {k: min(first.get(k, math.inf), second.get(k, math.inf))
            for k in sorted(set(first) | set(second))}


def _copy_weights(model: nn.Module, state: dict[str, torch.Tensor], old: list[int],
                  elements: list[int], path: str) -> None:
    rows = torch.tensor([elements.index(z) for z in old])
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise ConfigError(f"init_from: {path}: {extra[0]} is not a weight of the rebuilt model")
    with torch.no_grad():
        for name, target in own.items():
            source = state.get(name)
            if source is None:
                raise ConfigError(f"init_from: {path} lacks the weight {name}")
            if name == "atomic_numbers":
                continue  # the rebuilt model's, for the new element list
            axis = element_axis(name)
            if axis is not None and _same_but_elements(source, target, axis, len(old)):
                target.index_copy_(axis, rows, source.to(target.dtype))
            elif tuple(source.shape) == tuple(target.shape):
                target.copy_(source)
            else:
                raise ConfigError(f"init_from: {path}: {name} has shape {tuple(source.shape)}, "
                                  f"the rebuilt model {tuple(target.shape)}")


def _same_but_elements(source: torch.Tensor, target: torch.Tensor, axis: int,
                       count: int) -> bool:
    """``source`` has ``count`` elements along ``axis`` and ``target``'s shape elsewhere."""
    shape, wanted = list(source.shape), list(target.shape)
    if source.dim() != target.dim() or shape[axis] != count:
        return False
    shape[axis] = wanted[axis]
    return shape == wanted


def freeze(model: nn.Module, prefixes: Sequence[str], elements_added: Sequence[int]
           ) -> list[str]:
    """Set ``requires_grad=False`` on the parameters whose names start with one of
    ``prefixes`` (``embedding``, ``interactions.0``, ...); returns the frozen names.

    Raises:
        ConfigError: a prefix that names no parameter, the embedding frozen while the data
            adds elements (their fresh rows must train), or nothing left to train.
    """
    names = [n for n, _ in model.named_parameters()]
    frozen: list[str] = []
    for prefix in prefixes:
        prefix = str(prefix).strip().rstrip(".")
        hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"finetune.freeze: {prefix!r} names no parameter of the model "
                              f"(its parts: {', '.join(tops)}; layers as interactions.0)")
        frozen.extend(h for h in hits if h not in frozen)
    if elements_added and any(n == "embedding.weight" for n in frozen):
        raise ConfigError(
            "finetune.freeze: the embedding cannot be frozen when the training data adds "
            f"element(s) {[chemical_symbols[z] for z in elements_added]} (their fresh rows "
            "must train); freeze the interactions instead")
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("finetune.freeze: every parameter is frozen; nothing would train")
    if frozen:
        log.info("fine-tune: %d of %d parameter tensors frozen", len(frozen), len(names))
    return frozen


def prepare(model: nn.Module, cfg: DictConfig, train_graphs, record: dict[str, Any]
            ) -> dict[str, Any]:
    """Refit the energy shifts to ``train_graphs`` (``finetune.refit_energy_shift``) and
    freeze ``finetune.freeze``; returns what was done, for the deploy file's metadata."""
    from molsym.training.energy_shift import refit_energy_shift

    node = cfg.get("finetune") or {}
    refit = None
    if node.get("refit_energy_shift", True):
        refit = refit_energy_shift(model, train_graphs)
        if refit is not None:
            log.info("init_from: energy shifts refit to the %d training structures before "
                     "training: energy MAE %.3g -> %.3g meV", refit["num_graphs"],
                     refit["mae_before_meV"], refit["mae_after_meV"])
    frozen = freeze(model, list(node.get("freeze") or []), record["elements_added"])
    return {"energy_shift_refit_before": refit, "frozen": frozen}


def optimizer_overrides(cfg: DictConfig) -> dict[str, Any]:
    """``{"lr": finetune.lr}`` when the fine-tune sets its own learning rate, else {}."""
    lr = (cfg.get("finetune") or {}).get("lr")
    if lr is None:
        return {}
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(f"finetune.lr must be a positive number, got {lr!r}")
    return {"lr": float(lr)}
