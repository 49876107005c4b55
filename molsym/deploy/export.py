"""Export a molsym model as an artifact that runs with plain torch (no molsym import).

Two formats, both one ``.pt2`` file plus a ``<file>.json`` with the same metadata beside it:

- ``"export"``: a :mod:`torch.export` ``ExportedProgram`` (ATen graph + weights), loaded with
  ``torch.export.load(path).module()`` and run by torch's eager kernels. Quick to make.
- ``"aoti"``: the same program compiled ahead of time by AOTInductor into a native package for
  one device, loaded with ``torch._inductor.aoti_load_package(path)``. Compiling needs a C++
  compiler and takes minutes; the result runs without Python overhead.

Forces are part of the graph: the model's energy and its gradient -dE/dpos are traced together
(``make_fx`` records the backward pass as ordinary ATen ops), then exported with dynamic numbers
of atoms, edges and graphs. No autograd is needed at run time, so the artifact also runs under
``torch.inference_mode()``.

Calling convention of the loaded artifact (shapes for B graphs, N atoms, E directed edges)::

    out = artifact(z, pos, edge_index, batch, cell, cell_shifts)
    # z (N,) int64 atomic numbers; pos (N, 3) Angstrom; edge_index (2, E) int64, row 0 the
    # centre i, row 1 the neighbour j, every pair within metadata["cutoff"] in both
    # directions; batch (N,) int64 graph of each atom; cell (B, 3, 3) Angstrom, lattice
    # vectors as rows, zeros for molecules; cell_shifts (E, 3) integer image shifts as
    # floats, zeros for molecules. Edge vector: pos[j] - pos[i] + cell_shifts @ cell[batch[i]].
    # out: dict with "energy" (B,) eV, "forces" (N, 3) eV/Angstrom (models with a forces
    # output) and every other output of the model (e.g. "dipole" (B, 3) e*Angstrom,
    # scalar properties (B,)).

Floating inputs must have the exported dtype and everything must be on the exported device
(``metadata["dtype"]``, ``metadata["device"]``). An atomic number outside
``metadata["elements"]`` fails with a RuntimeError.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from molsym import __version__
from molsym.atomic import atomic_path, write_text_atomic
from molsym.dtypes import dtype_name, model_dtype
from molsym.errors import ConfigError

#: Version of the artifact layout and calling convention below; bump when either changes.
EXPORT_VERSION = 1
FORMATS = ("export", "aoti")
#: Name of the metadata entry inside the ``export`` file (``extra_files``) and the AOTI
#: package (``aot_inductor.metadata``).
METADATA_KEY = "molsym_metadata.json"
INPUT_NAMES = ("z", "pos", "edge_index", "batch", "cell", "cell_shifts")
INPUT_DOC = {
    "z": "(N,) int64 atomic numbers",
    "pos": "(N, 3) float positions, Angstrom",
    "edge_index": "(2, E) int64; row 0 centre i, row 1 neighbour j; both directions",
    "batch": "(N,) int64 graph index of each atom",
    "cell": "(B, 3, 3) float lattice vectors as rows, Angstrom; zeros for molecules",
    "cell_shifts": "(E, 3) float integer image shifts; zeros for molecules",
}
_NUM_Z = 119  # atomic numbers 0..118


class ExportablePotential(nn.Module):
    """Tensor-only wrapper with the artifact's calling convention (see the module docstring).

    Checks the atomic numbers inside the graph (the model's own check reads tensor values in
    Python, which a traced graph cannot keep) and computes forces whenever the model has a
    "forces" output.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        known = torch.zeros(_NUM_Z, dtype=torch.bool)
        known[torch.tensor([int(z) for z in model.elements])] = True
        self.register_buffer("known", known, persistent=False)

    def forward(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        cell: torch.Tensor,
        cell_shifts: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        ok = self.known.index_select(0, z.clamp(0, _NUM_Z - 1)).all()
        torch._assert_async(ok, "molsym export: atomic number not among the model's elements")
        out = self.model(
            z, pos, edge_index, batch, cell.shape[0], cell=cell, cell_shifts=cell_shifts,
            compute_forces=True, compute_stress=False, paired_edges=False,
        )
        return {key: out[key] for key in sorted(out)}


def _without_python_element_check(model: nn.Module) -> nn.Module:
    """``model`` with its Python check of the atomic numbers off (it reads tensor values to
    raise a readable error, which a traced graph cannot keep): :class:`ExportablePotential`
    checks in-graph instead."""
    model.check_elements = False
    return model


def example_inputs(
    elements: list[int],
    cutoff: float,
    sizes: tuple[int, ...] = (3, 5),
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """A batch of small random molecules over ``elements`` in the artifact's input layout.

    One molecule per entry of ``sizes`` (atoms), atoms on a jittered 1.3 Angstrom grid so that
    every molecule has edges within ``cutoff``. Returns (z, pos, edge_index, batch, cell,
    cell_shifts).
    """
    import ase
    from torch_geometric.data import Batch

    from molsym.data.graph import atoms_to_graph

    rng = np.random.default_rng(seed)
    graphs = []
    for k, n in enumerate(sizes):
        grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
        pos = grid[rng.permutation(len(grid))[:n]] * 1.3 + rng.uniform(-0.2, 0.2, (n, 3))
        z = [elements[(k + i) % len(elements)] for i in range(n)]
        graphs.append(atoms_to_graph(ase.Atoms(numbers=z, positions=pos), cutoff, dtype=dtype))
    b = Batch.from_data_list(graphs)
    tensors = (b.z, b.pos, b.edge_index, b.batch, b.cell, b.cell_shifts)
    return tuple(t.to(device) for t in tensors)


class _Flat(nn.Module):
    """``module`` called with every input flattened to 1-D and reshaped back inside.

    ``make_fx(tracing_mode="symbolic")`` makes *every* input dimension symbolic, also the fixed
    3 of ``pos`` (N, 3); sizes computed from it would then be symbolic too (e.g. the number of
    Cartesian components, which a model may use as a Python dict key). Flat inputs leave only
    the lengths symbolic and the fixed trailing dimensions literal.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, z, pos, edge_index, batch, cell, cell_shifts):
        return self.module(z, pos.view(-1, 3), edge_index.view(2, -1), batch,
                           cell.view(-1, 3, 3), cell_shifts.view(-1, 3))


def _unflatten_inputs(graph: torch.fx.GraphModule, flat: tuple[int, ...]) -> None:
    """Let ``graph`` (traced on flat inputs, see :class:`_Flat`) take the inputs in their
    natural shapes: the placeholders at positions ``flat`` are reshaped to 1-D inside."""
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    for index in flat:
        node = placeholders[index]
        with graph.graph.inserting_after(node):
            reshaped = graph.graph.call_function(torch.ops.aten.reshape.default, (node, [-1]))
        node.replace_all_uses_with(
            reshaped, delete_user_cb=lambda user, new=reshaped: user is not new)
    graph.recompile()


def trace_potential(
    model: nn.Module, example: tuple[torch.Tensor, ...]
) -> torch.fx.GraphModule:
    """ATen graph of energy *and* forces of ``model`` (a molsym model), symbolic in N, E, B,
    as a module with the calling convention of :class:`ExportablePotential`.

    The model is copied, put in eval mode and frozen (no parameter gradients are traced).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    frozen = _without_python_element_check(copy.deepcopy(model).eval().requires_grad_(False))
    flat = _Flat(ExportablePotential(frozen).to(example[1].device))
    flat_example = [t.reshape(-1) if t.dim() > 1 else t for t in example]
    with torch.enable_grad():
        graph = make_fx(flat, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*flat_example)
    _unflatten_inputs(graph, tuple(i for i, t in enumerate(example) if t.dim() > 1))
    return graph


def export_program(
    model: nn.Module,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.export.ExportedProgram:
    """``torch.export`` program of :class:`ExportablePotential` around ``model`` with dynamic
    numbers of atoms, edges and graphs, on ``device`` in ``dtype`` (default: the model's)."""
    dtype = dtype or model_dtype(model)
    model = copy.deepcopy(model).to(device=device, dtype=dtype)
    example = example_inputs(list(model.elements), float(model.cutoff), (3, 5), dtype, device)
    traced = trace_potential(model, example)
    atoms, edges, graphs = (torch.export.Dim.DYNAMIC,) * 3
    dynamic = ({0: atoms}, {0: atoms}, {1: edges}, {0: atoms}, {0: graphs}, {0: edges})
    return torch.export.export(traced, example, dynamic_shapes=dynamic, strict=False)


def export_metadata(
    model: nn.Module, fmt: str, device: str, dtype: torch.dtype, outputs: list[str]
) -> dict:
    """What the artifact carries about itself (JSON-able)."""
    from molsym.deploy.model_file import DEFAULT_UNITS

    config = model.config() if hasattr(model, "config") else {}
    return {
        "molsym_export_version": EXPORT_VERSION,
        "format": fmt,
        "cutoff": float(model.cutoff),
        "elements": [int(z) for z in model.elements],
        "outputs": sorted(outputs),
        "units": dict(DEFAULT_UNITS),
        "dtype": dtype_name(dtype),
        "device": str(device),
        "inputs": [{"name": n, "shape": INPUT_DOC[n]} for n in INPUT_NAMES],
        "model_class": getattr(model, "model_name", type(model).__name__),
        "config": json.loads(json.dumps(config)),
        "molsym_version": __version__,
        "torch_version": torch.__version__,
    }


def _check_against_model(run, model: nn.Module, device, dtype, tol: float) -> float:
    """Largest relative deviation of ``run`` from the model on a batch of other sizes."""
    example = example_inputs(list(model.elements), float(model.cutoff), (2, 7, 4), dtype, device,
                             seed=1)
    z, pos, edge_index, batch, cell, shifts = example
    model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    ref = model(z, pos, edge_index, batch, cell.shape[0], cell=cell, cell_shifts=shifts)
    got = run(*example)
    if set(got) != set(ref):
        raise RuntimeError(f"exported outputs {sorted(got)} differ from the model's {sorted(ref)}")
    worst = 0.0
    for key in ref:
        want, have = ref[key].detach(), got[key].detach()
        scale = max(float(want.abs().max()), 1.0)
        worst = max(worst, float((have - want).abs().max()) / scale)
    if not worst <= tol:
        raise RuntimeError(f"exported model deviates from the Python model by {worst:.3g} "
                           f"(relative, tolerance {tol:g})")
    return worst


def export_model(
    model: nn.Module,
    path: str | Path,
    format: str = "export",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Write ``model`` (a molsym model) to ``path`` in ``format`` ("export" or "aoti"), with
    its metadata inside the file and in ``<path>.json``; returns the metadata.

    ``check`` runs the exported program and compares energies and forces with the Python model
    on molecules of sizes it was not traced with (raises RuntimeError on a mismatch).
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose from {list(FORMATS)}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("export to cuda needs a visible CUDA device")
    dtype = dtype or model_dtype(model)
    path = Path(path)
    program = export_program(model, device, dtype)
    run = program.module()
    example = example_inputs(list(model.elements), float(model.cutoff), (2, 3), dtype, device)
    meta = export_metadata(model, format, str(device), dtype, list(run(*example)))
    if check:  # the program in memory; serialising it is torch's part
        tol = 1e-8 if dtype == torch.float64 else 1e-4
        meta["check_max_rel_deviation"] = _check_against_model(run, model, device, dtype, tol)
    text = json.dumps(meta, indent=2)
    if format == "export":
        with atomic_path(path) as tmp:
            torch.export.save(program, tmp, extra_files={METADATA_KEY: text})
    else:
        configs = {"aot_inductor.metadata": {METADATA_KEY: text}}
        with atomic_path(path) as tmp:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp),
                                                     inductor_configs=configs)
    write_text_atomic(path.with_name(path.name + ".json"), json.dumps(meta, indent=2) + "\n")
    return meta


def load_artifact(path: str | Path) -> tuple[Any, dict]:
    """(callable, metadata) of an exported artifact of either format, with plain torch.

    This is what a program without molsym does (see docs/export.md); molsym uses it for checks.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"exported model not found: {path}")
    try:
        files = {METADATA_KEY: ""}
        program = torch.export.load(path, extra_files=files)
        return program.module(), json.loads(files[METADATA_KEY])
    except Exception:  # noqa: BLE001 - not an ExportedProgram: try an AOTInductor package
        pass
    try:
        runner = torch._inductor.aoti_load_package(str(path))
        return runner, json.loads(runner.get_metadata()[METADATA_KEY])
    except Exception as exc:  # noqa: BLE001 - report any failure as "not an artifact"
        raise ConfigError(f"{path}: not a molsym export artifact ({exc})") from None
