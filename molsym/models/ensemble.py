"""A committee of molsym models: the mean prediction and the members' spread.

``EnsembleModel(members=[{"model_class": "equivariant", "config": {...}}, ...])`` builds its
members from the allowlist :data:`molsym.models.MODEL_CLASSES` (config = constructor
arguments, so a deploy file of a committee is plain data like any other);
:meth:`EnsembleModel.from_models` wraps models trained separately. Members must agree on
cutoff, elements and outputs.

``forward`` takes the arguments of :meth:`AtomisticModel.forward` and returns, for every output
of the members, the mean over members under the same name and the spread under
``<name>_std``: the standard deviation over members (``energy_std`` (B,) eV and each scalar
property (B,)), and for vectors the root-mean-square deviation of the vector from the mean
vector (``forces_std`` (N,) eV/Angstrom per atom, ``dipole_std`` (B,) e*Angstrom). Neighbour
pairs are found once for all members; each member then runs its own forward and force
gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from ase.data import chemical_symbols
from torch import nn

from molsym import keys
from molsym.dtypes import model_dtype
from molsym.errors import ConfigError
from molsym.nn.pairs import default_pairing

#: Outputs whose spread is the RMS deviation of a vector (last axis of size 3).
VECTOR_OUTPUTS = (keys.FORCES, keys.DIPOLE)
#: Outputs averaged but given no spread.
NO_SPREAD = (keys.STRESS, keys.CHARGES)


def std_key(name: str) -> str:
    """Name of the spread of output ``name`` (``energy`` -> ``energy_std``)."""
    return f"{name}_std"


def check_compatible(members: list[nn.Module], names: list[str] | None = None) -> None:
    """Raise :class:`ConfigError` unless every member has the same cutoff, elements, outputs."""
    names = names or [f"member {i}" for i in range(len(members))]
    first = members[0]
    for name, m in zip(names[1:], members[1:], strict=True):
        for what, a, b in (("cutoff", first.cutoff, m.cutoff),
                           ("elements", list(first.elements), list(m.elements)),
                           ("outputs", list(first.outputs), list(m.outputs))):
            if a != b:
                if what == "elements":
                    a, b = ([chemical_symbols[z] for z in v] for v in (a, b))
                raise ConfigError(f"cannot combine models: {name} has {what} {b}, "
                                  f"{names[0]} has {a}")


class EnsembleModel(nn.Module):
    """Committee of allowlisted molsym models (see the module docstring).

    Args:
        members: one ``{"model_class": name, "config": constructor kwargs}`` per member.
    """

    model_name = "ensemble"

    def __init__(self, members: list[dict[str, Any]]):
        super().__init__()
        from molsym.models import MODEL_CLASSES  # members: architectures, not committees

        if not members:
            raise ConfigError("an ensemble needs at least one member")
        built = []
        for i, spec in enumerate(members):
            name = spec.get("model_class") if isinstance(spec, dict) else spec
            cls = MODEL_CLASSES.get(name) if isinstance(name, str) else None
            if cls is None:
                raise ConfigError(f"ensemble member {i}: unknown model class {name!r}")
            built.append(cls(**spec["config"]))
        check_compatible(built)
        self._config = {"members": [{"model_class": s["model_class"], "config": s["config"]}
                                    for s in members]}
        self.members = nn.ModuleList(built)
        self.cutoff = built[0].cutoff
        self.elements = list(built[0].elements)
        self.outputs = list(built[0].outputs)

    @classmethod
    def from_models(cls, models: list[nn.Module]) -> EnsembleModel:
        """A committee of trained models (their weights copied; dtype of the first)."""
        from molsym.models import class_name  # the package imports this module

        check_compatible(models)
        ensemble = cls([{"model_class": class_name(m), "config": m.config()} for m in models])
        ensemble = ensemble.to(model_dtype(models[0]))
        for target, source in zip(ensemble.members, models, strict=True):
            target.load_state_dict(source.state_dict())
        return ensemble

    def __len__(self) -> int:
        return len(self.members)

    def config(self) -> dict[str, Any]:
        """The constructor kwargs: ``EnsembleModel(**model.config())`` rebuilds it."""
        import copy

        return copy.deepcopy(self._config)

    def forward(self, z, pos, edge_index, batch, num_graphs, **kwargs) -> dict[str, torch.Tensor]:
        """Mean and spread of the members' outputs (see the module docstring)."""
        if kwargs.get("paired_edges") is None and not torch.compiler.is_compiling():
            edge_index, kwargs["paired_edges"] = default_pairing(
                edge_index, kwargs.get("cell_shifts") is not None)
        outs = [m(z, pos, edge_index, batch, num_graphs, **kwargs) for m in self.members]
        return combine(outs)


def combine(outs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean under each name and spread under ``<name>_std`` of the members' output dicts."""
    result: dict[str, torch.Tensor] = {}
    for name in outs[0]:
        stacked = torch.stack([o[name] for o in outs])
        mean = stacked.mean(0)
        result[name] = mean
        if name in NO_SPREAD:
            continue
        deviation = stacked - mean
        if name in VECTOR_OUTPUTS:
            result[std_key(name)] = deviation.pow(2).sum(-1).mean(0).sqrt()
        else:
            result[std_key(name)] = deviation.pow(2).mean(0).sqrt()
    return result
