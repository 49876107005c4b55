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
pairs are found once for all members. In eval mode, members of one architecture run together
in one batched pass (:mod:`molsym.models.stacked`: stacked weights, shared edge geometry, one
force gradient for all); other members, and every member in training mode, with stress, in
compiled graphs or on graphs past ``stack_max_edge_features`` (where the loop is faster on a
CPU), run one after another. Both give
the same outputs to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from ase.data import chemical_symbols
from torch import nn

from molsym import keys
from molsym.dtypes import model_dtype
from molsym.errors import ConfigError
from molsym.models.base import saved_config
from molsym.models.stacked import (
    STACK_MAX_EDGE_FEATURES,
    StackedEquivariant,
    architecture_key,
)
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
            built.append(cls(**saved_config(spec["config"])))
        check_compatible(built)
        self._config = {"members": [{"model_class": s["model_class"], "config": s["config"]}
                                    for s in members]}
        self.members = nn.ModuleList(built)
        self.cutoff = built[0].cutoff
        self.elements = list(built[0].elements)
        self.outputs = list(built[0].outputs)
        self._groups = _stackable_groups(built)
        #: graphs up to this many edges x members x channels run in one batched pass (0:
        #: never); a run-time setting, not part of the config (:mod:`molsym.models.stacked`)
        self.stack_max_edge_features = STACK_MAX_EDGE_FEATURES

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
            edge_index, shifts, kwargs["paired_edges"] = default_pairing(
                edge_index, kwargs.get("cell_shifts"))
            if shifts is not None:
                kwargs["cell_shifts"] = shifts
        stacked = self._run_stacked(z, pos, edge_index, batch, num_graphs, kwargs)
        if len(stacked) == 1 and stacked[0][0] == list(range(len(self.members))):
            return combine_stacked(stacked[0][1])  # all members in one pass
        outs: list[dict[str, torch.Tensor] | None] = [None] * len(self.members)
        for indices, out in stacked:
            for k, i in enumerate(indices):
                outs[i] = {name: value[k] for name, value in out.items()}
        for i, member in enumerate(self.members):
            if outs[i] is None:
                outs[i] = member(z, pos, edge_index, batch, num_graphs, **kwargs)
        return combine(outs)

    def _run_stacked(self, z, pos, edge_index, batch, num_graphs, kwargs):
        """[(member indices, stacked outputs)] of the groups that run together here (none in
        the cases the module docstring lists)."""
        if (self.training or kwargs.get("compute_stress") or torch.compiler.is_compiling()
                or not self._groups):
            return []
        num_edges = edge_index.shape[1] * (2 if kwargs.get("paired_edges") else 1)
        return [(indices, group(z, pos, edge_index, batch, num_graphs, **{
                    k: v for k, v in kwargs.items() if k != "compute_stress"}))
                for indices, group in self._groups
                if group.can_run(num_edges, self.stack_max_edge_features)]


def _stackable_groups(members: list[nn.Module]) -> list[tuple[list[int], StackedEquivariant]]:
    """The members that share an architecture :class:`StackedEquivariant` takes, by index
    (groups of two or more)."""
    by_key: dict[str, list[int]] = {}
    for i, member in enumerate(members):
        key = architecture_key(member)
        if key is not None:
            by_key.setdefault(key, []).append(i)
    return [(indices, StackedEquivariant([members[i] for i in indices]))
            for indices in by_key.values() if len(indices) > 1]


def combine(outs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean under each name and spread under ``<name>_std`` of the members' output dicts."""
    return combine_stacked({name: torch.stack([o[name] for o in outs]) for name in outs[0]})


def combine_stacked(stacked: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`combine` of the members' outputs stacked along a first axis, {name: (M, ...)}."""
    result: dict[str, torch.Tensor] = {}
    for name, values in stacked.items():
        mean = values.mean(0)
        result[name] = mean
        if name in NO_SPREAD:
            continue
        deviation = values - mean
        if name in VECTOR_OUTPUTS:
            result[std_key(name)] = deviation.pow(2).sum(-1).mean(0).sqrt()
        else:
            result[std_key(name)] = deviation.pow(2).mean(0).sqrt()
    return result
