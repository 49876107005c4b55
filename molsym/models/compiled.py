"""``torch.compile`` of a molsym model for inference and training, shared by predict, the ASE
calculator and ``molsym train``.

Workaround (torch 2.13, CPU): Inductor's multi-threaded C++ kernels scatter with vectorised
atomic adds, and with 2 threads they gave float32 forces off by up to 1e-2 eV/Angstrom (the
energy was right; turning off vectorised loop tails fixed that case, but then float64 graphs
failed to compile with an assertion in the same atomic-add code). Generated CPU kernels
therefore run single-threaded (:data:`INDUCTOR_OPTIONS`); matrix products still use every
torch thread, and training measured the same speed either way (docs/benchmarks.md).
``tests/models/test_compiled.py`` checks compiled against eager with 2 threads. No effect on
CUDA kernels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.fx.experimental import _config as fx_config

from molsym.nn.pairs import default_pairing

#: Inductor options of every molsym compile (also applied to the lazily compiled backward).
INDUCTOR_OPTIONS = {"cpp.threads": 1}


class CompiledModel(torch.nn.Module):
    """``torch.compile(dynamic=True)`` of a molsym model, called like the model.

    Atom, edge and molecule counts are symbolic, so batches of new sizes reuse the compiled
    graph (forces by ``torch.func.grad``, one graph; in training the parameter gradients come
    from its compiled backward). Dynamo keeps a plain int argument static until it has seen it
    change, so the molecule count goes in as the size of an empty (B, 0) tensor; duck shaping
    is off, or a count that happens to equal 3 at the first call would be tied to the xyz
    dimension and frozen. A size of 1 is still specialised: single-molecule batches (the
    calculator's case) and multi-molecule batches compile once each, and so do train and eval
    mode; nothing else recompiles. Symmetric non-periodic edge lists are passed with one
    edge per pair (``paired_edges``, :mod:`molsym.nn.pairs`), found before the call.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._compiled = torch.compile(self._run, dynamic=True, options=INDUCTOR_OPTIONS)

    def _run(self, z: torch.Tensor, pos: torch.Tensor, edge_index: torch.Tensor,
             batch: torch.Tensor, graphs: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        return self.model(z, pos, edge_index, batch, graphs.shape[0], **kwargs)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, edge_index: torch.Tensor,
                batch: torch.Tensor, num_graphs: int, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Same arguments and outputs as ``AtomisticModel.forward``. A graph the model
        evaluates in edge chunks (``chunks_edges``, :mod:`molsym.nn.chunks`) runs eager: a
        compiled graph holds every edge tensor at once."""
        chunks = getattr(self.model, "chunks_edges", None)
        if chunks is not None and chunks(int(edge_index.shape[1])):
            return self.model(z, pos, edge_index, batch, int(num_graphs), **kwargs)
        graphs = torch.empty(int(num_graphs), 0, device=pos.device)
        if kwargs.get("paired_edges") is None:
            # found here, in eager code: it reads the edge list (data-dependent)
            edge_index, shifts, kwargs["paired_edges"] = default_pairing(
                edge_index, kwargs.get("cell_shifts"))
            if shifts is not None:
                kwargs["cell_shifts"] = shifts
        with fx_config.patch(use_duck_shape=False):
            return self._compiled(z, pos, edge_index, batch, graphs, **kwargs)


def compile_model(model: torch.nn.Module) -> CompiledModel:
    """The model wrapped for ``torch.compile`` (see :class:`CompiledModel`); it compiles on
    its first call (tens of seconds on a CPU)."""
    return CompiledModel(model)
