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

import logging
from typing import Any

import torch
from torch.fx.experimental import _config as fx_config

from molsym.errors import ConfigError
from molsym.nn.pairs import default_pairing

log = logging.getLogger(__name__)

#: Inductor options of every molsym compile (also applied to the lazily compiled backward).
INDUCTOR_OPTIONS = {"cpp.threads": 1}
#: ``compile="auto"`` (the predictor's and the calculator's default): graphs of at least this
#: many edges run compiled, smaller ones eager. At 2^18 edges (about 5,000 water atoms at 5
#: Angstrom) an eager step takes seconds and compiling about as long, and a compiled 10^4-atom
#: box ran 4.8x faster than eager (docs/benchmarks.md, Large systems); a few small molecules
#: would wait longer for the compiler than for their results.
AUTO_COMPILE_EDGES = 2**18
COMPILE_MODES = ("auto", True, False)


def check_compile(compile: bool | str) -> bool | str:
    """``compile`` if it is one of :data:`COMPILE_MODES`, else a ConfigError."""
    if not (compile is True or compile is False or compile == "auto"):
        raise ConfigError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
    return compile


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

    def __init__(self, model: torch.nn.Module, eager_below: int = 0) -> None:
        super().__init__()
        self.model = model
        #: graphs with fewer edges run eager (``compile="auto"``: :data:`AUTO_COMPILE_EDGES`)
        self.eager_below = int(eager_below)
        #: set when compiling failed (e.g. no C++ compiler): every later call runs eager
        self.failed = False
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
        num_edges = int(edge_index.shape[1]) * (2 if kwargs.get("paired_edges") else 1)
        if self.failed or num_edges < self.eager_below or (
                chunks is not None and chunks(num_edges)):
            return self.model(z, pos, edge_index, batch, int(num_graphs), **kwargs)
        graphs = torch.empty(int(num_graphs), 0, device=pos.device)
        if kwargs.get("paired_edges") is None:
            # found here, in eager code: it reads the edge list (data-dependent)
            edge_index, shifts, kwargs["paired_edges"] = default_pairing(
                edge_index, kwargs.get("cell_shifts"))
            if shifts is not None:
                kwargs["cell_shifts"] = shifts
        try:
            with fx_config.patch(use_duck_shape=False):
                return self._compiled(z, pos, edge_index, batch, graphs, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as exc:  # e.g. no C++ compiler
            if self.model.training:
                raise  # MolsymModule reports it and goes on eagerly itself
            log.warning("torch.compile failed, running eagerly from now on: %s",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.failed = True
            return self.model(z, pos, edge_index, batch, int(num_graphs), **kwargs)


def compile_model(model: torch.nn.Module, eager_below: int = 0) -> CompiledModel:
    """The model wrapped for ``torch.compile`` (see :class:`CompiledModel`); it compiles on
    its first call with at least ``eager_below`` edges (tens of seconds on a CPU)."""
    return CompiledModel(model, eager_below)


def for_inference(model: torch.nn.Module, compile: bool | str) -> torch.nn.Module:
    """What the predictor and the calculator call: ``model`` itself (``compile=False``),
    compiled for every graph (True) or for graphs of :data:`AUTO_COMPILE_EDGES` edges and
    more (``"auto"``)."""
    compile = check_compile(compile)
    if compile is False:
        return model
    return compile_model(model, AUTO_COMPILE_EDGES if compile == "auto" else 0)
