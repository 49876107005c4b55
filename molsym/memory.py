"""Will one structure's energy and forces fit in memory? An estimate, checked before the model
runs, so that ``molsym predict`` and the calculator refuse a structure that is too large with
a message saying how many atoms fit, instead of being killed by the system.

The estimate (bytes) is ``edges x bytes per edge + atoms x bytes per atom``: per edge the
graph (indices, cell shifts, edge vectors and their gradient, the neighbour search) and,
unless the model evaluates the graph in edge chunks (:mod:`molsym.nn.chunks`), the model's
edge tensors (radial weights and hidden layer, neighbour features and messages, what autograd
keeps for the forces); a chunked graph needs one chunk of those instead. Measured on water
boxes (docs/benchmarks.md, "Large systems") it errs on the generous side (more than used).

Memory available: the ``memory_limit`` argument (bytes, or a string such as ``"16GB"``), else
the environment variable :data:`MEMORY_LIMIT_ENV`, else ``MemAvailable`` of /proc/meminfo,
lowered to the room left under the cgroup's ``memory.max`` when there is one.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import ase
import numpy as np
import torch

from molsym.errors import ConfigError, MolsymError

#: Environment variable with the memory one prediction may use, e.g. ``16GB`` or ``500MB``.
MEMORY_LIMIT_ENV = "MOLSYM_MEMORY_LIMIT"
#: Without an explicit limit, structures estimated below this are not checked.
UNCHECKED_BYTES = 2**27
#: Graph bytes per edge independent of the float size (int64 indices, neighbour search).
GRAPH_EDGE_BYTES = 96
#: Graph floats per edge (cell shifts, edge vectors, their gradient, per-edge cell).
GRAPH_EDGE_FLOATS = 20
#: Floats per atom, channel and feature component of each layer (features, products, grads).
ATOM_FLOATS_PER_FEATURE = 12

#: Words of every refusal message (the CLI repeats such rows' error on stderr).
MEMORY_REFUSAL = "atoms of this density fit"

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class MemoryLimitError(MolsymError, RuntimeError):
    """A structure whose evaluation would need more memory than is available."""


def parse_bytes(value: int | float | str) -> int:
    """``16GB``, ``500 MiB``, ``2e9`` or a number of bytes -> bytes (positive)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(value))
        if match is None or match.group(2).upper() not in _UNITS:
            raise ConfigError(f"memory limit {value!r}: expected a size such as 16GB or 500MB")
        number, unit = float(match.group(1)), match.group(2).upper()
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size <= 0:
        raise ConfigError(f"memory limit {value!r} must be positive")
    return int(size)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_room() -> int | None:
    """Bytes left under the cgroup v2 ``memory.max`` of this process (None: no limit)."""
    try:
        group = Path("/proc/self/cgroup").read_text().strip().split("::")[-1]
        base = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text().strip())
    except (OSError, ValueError, IndexError):
        return None


def available_bytes(memory_limit: int | float | str | None = None) -> tuple[int, str]:
    """The memory one evaluation may use, and where that figure comes from."""
    if memory_limit is not None:
        return parse_bytes(memory_limit), "memory_limit"
    env = os.environ.get(MEMORY_LIMIT_ENV)
    if env:
        return parse_bytes(env), MEMORY_LIMIT_ENV
    figures = [(v, s) for v, s in ((_meminfo_available(), "MemAvailable in /proc/meminfo"),
                                   (_cgroup_room(), "the cgroup's memory.max")) if v is not None]
    if not figures:
        return 2**62, "no limit known"
    return min(figures)


def _first_member(model: torch.nn.Module) -> torch.nn.Module:
    members = getattr(model, "members", None)
    return members[0] if members else model


def model_edge_floats(model: torch.nn.Module) -> int:
    """Floats per edge of one unchunked evaluation with forces: twice the radial weights,
    three times the radial hidden layer, and per interaction the neighbour features (twice)
    and the messages (three times), from the model's sizes."""
    model = _first_member(model)
    radial = getattr(model, "radial", None)
    hidden = radial.lin1.out_features if radial is not None else 64
    width = radial.lin2.out_features if radial is not None else 256
    floats = 2 * width + 3 * hidden
    for interaction in getattr(model, "interactions", []):
        c = getattr(interaction, "num_channels", None) or width
        k_in = 1 + 3 * (getattr(interaction, "l_in", 0) >= 1) + 9 * (
            getattr(interaction, "l_in", 0) >= 2)
        l_max = getattr(interaction, "l_max", 0)
        k_out = 1 + 3 * (l_max >= 1) + 9 * (l_max >= 2)
        floats += c * (2 * k_in + 3 * k_out)
    return floats


def _atom_floats(model: torch.nn.Module) -> int:
    model = _first_member(model)
    channels = model.embedding.embedding_dim if hasattr(model, "embedding") else 64
    k = 1 + 3 * (getattr(model, "l_max", 0) >= 1) + 9 * (getattr(model, "l_max", 0) >= 2)
    layers = max(1, len(getattr(model, "interactions", [])))
    return ATOM_FLOATS_PER_FEATURE * channels * k * layers + 64


def needed_bytes(model: torch.nn.Module, num_atoms: int, num_edges: int,
                 dtype: torch.dtype) -> int:
    """Estimated bytes of one evaluation (energy and forces) of a graph of this size."""
    size = torch.finfo(dtype).bits // 8
    member = _first_member(model)
    chunked = getattr(member, "chunks_edges", None)
    edge_model = model_edge_floats(model) * size
    graph = num_edges * (GRAPH_EDGE_BYTES + GRAPH_EDGE_FLOATS * size)
    if chunked is not None and chunked(num_edges):
        model_edges = min(num_edges, int(member.edge_chunk)) * edge_model
    else:
        model_edges = num_edges * edge_model
    return int(graph + model_edges + num_atoms * _atom_floats(model) * size)


def estimated_edges(atoms: ase.Atoms, cutoff: float) -> int:
    """Directed edges expected within ``cutoff`` at the structure's mean density (the cell
    volume when periodic, else the box around the atoms, at least the cutoff on each side)."""
    n = len(atoms)
    if atoms.pbc.any():
        cell = np.asarray(atoms.cell[:])
        extent = np.ptp(atoms.positions, axis=0) if n else np.zeros(3)
        lengths = np.where(atoms.pbc, np.linalg.norm(cell, axis=1), np.maximum(extent, cutoff))
        volume = abs(np.linalg.det(cell)) if atoms.pbc.all() else float(np.prod(lengths))
    else:
        extent = np.ptp(atoms.positions, axis=0) if n else np.zeros(3)
        volume = float(np.prod(np.maximum(extent, cutoff)))
    sphere = 4.0 / 3.0 * math.pi * cutoff**3
    return int(n * min(n - 1, n / max(volume, 1e-9) * sphere)) if n else 0


def _gb(value: float) -> str:
    return f"{value / 1e9:.3g} GB"


def atoms_that_fit(model: torch.nn.Module, num_atoms: int, num_edges: int,
                   dtype: torch.dtype, room: int) -> int:
    """The most atoms (edges in proportion, the same density) whose :func:`needed_bytes` is
    at most ``room``; scanned over 1/1000 steps of ``num_atoms``, as the need jumps where
    chunking starts."""
    for k in range(1000, 0, -1):
        atoms = num_atoms * k // 1000
        if atoms and needed_bytes(model, atoms, num_edges * k // 1000, dtype) <= room:
            return atoms
    return 0


def apply_memory_limit(model: torch.nn.Module, memory_limit: int | float | str | None) -> None:
    """Give every submodule that chunks its edges (``chunks_edges``) the ``memory_limit`` of
    the predictor or calculator, so its choice to chunk (:func:`molsym.nn.chunks.should_chunk`)
    and :func:`check_fits` use the same room."""
    if memory_limit is None:
        return
    parse_bytes(memory_limit)  # a bad size fails here, before any structure
    for module in model.modules():
        if hasattr(module, "chunks_edges"):
            module.memory_limit = memory_limit


def check_fits(model: torch.nn.Module, num_atoms: int, num_edges: int, dtype: torch.dtype,
               memory_limit: int | float | str | None = None, estimated: bool = False) -> None:
    """Raise :class:`MemoryLimitError` when :func:`needed_bytes` exceeds what is available;
    the message says how many atoms of this density fit (cost is linear in atoms)."""
    need = needed_bytes(model, num_atoms, num_edges, dtype)
    if need < UNCHECKED_BYTES and memory_limit is None and not os.environ.get(MEMORY_LIMIT_ENV):
        return  # small molecules: no need to read /proc for each one
    room, source = available_bytes(memory_limit)
    if need <= room:
        return
    fit = atoms_that_fit(model, num_atoms, num_edges, dtype, room)
    edges = f"{'about ' if estimated else ''}{num_edges:,} edges"
    raise MemoryLimitError(
        f"{num_atoms:,} atoms ({edges}) need about {_gb(need)} for energy and forces, more "
        f"than the {_gb(room)} available ({source}); about {fit:,} {MEMORY_REFUSAL} "
        f"(set {MEMORY_LIMIT_ENV} or memory_limit / --memory-limit to allow more)")
