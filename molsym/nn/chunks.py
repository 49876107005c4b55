"""Edge chunks: the neighbour sums of a large graph, a few edges at a time.

On a 10^5-atom water box (5 Angstrom cutoff, about 54 neighbours per atom) the edge tensors of
one evaluation (radial weights, neighbour features, messages, and the intermediates autograd
keeps for the forces) need about 5 kB per edge in float32, some 29 GB in all. Every
interaction sum is linear in its edges, so it can be computed over disjoint chunks of edges
and added up; each chunk runs under activation checkpointing (``torch.utils.checkpoint``,
non-reentrant), which keeps only its inputs (edge vectors, indices and the node features) and
recomputes its edge tensors during the backward pass. Peak memory is then the node features
plus a few bytes per edge plus one chunk's tensors, at the cost of computing each chunk's
forward twice. Models use it only for graphs with more than ``chunk_above`` edges (eager
mode: a compiled graph has one fixed edge count; ``CompiledModel`` hands such graphs to the
eager model). While chunking, large blocks are allocated with ``mmap`` (:func:`lean_malloc`).

By default (``chunk_above = "auto"``, :func:`should_chunk`) a graph is chunked only when its
unchunked evaluation would not fit comfortably in the memory available: chunking costs CPU
time (each chunk's forward runs twice: a 10^4-atom water box took 1.49 CPU ms per atom
chunked against 0.99 unchunked, docs/benchmarks.md "Large systems"), so graphs that fit keep
the faster path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

#: Default chunk size (edges) of the models' chunked evaluation.
EDGE_CHUNK = 2**15
#: The models' default ``chunk_above``: chunk a graph when it would not fit unchunked.
AUTO = "auto"
#: Graphs with at most this many edges are never chunked by AUTO (about 1.4 GB of edge
#: tensors unchunked, float32, 32 channels, l_max = 1).
CHUNK_ABOVE = 2**18
#: AUTO chunks a larger graph when its unchunked edge tensors would need more than this
#: share of the memory available (the rest: graph, node features, other processes' growth).
AUTO_MEMORY_SHARE = 0.5
#: A training step (double backward) keeps about this many times an inference's edge
#: tensors (826 against 371 MB per 1,000 water atoms, docs/benchmarks.md).
TRAINING_EDGE_FACTOR = 2.5
#: Blocks at least this large are allocated by glibc with their own ``mmap``, given back to
#: the system when freed (see :func:`lean_malloc`).
MMAP_THRESHOLD = 4 * 2**20

_malloc_set = False


#: Set to 0 to leave glibc's allocator alone (faster, more memory; see :func:`lean_malloc`).
LEAN_MALLOC_ENV = "MOLSYM_LEAN_MALLOC"


def lean_malloc() -> None:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (once per process; no-op off
    glibc or with ``MOLSYM_LEAN_MALLOC=0``). glibc raises the threshold after each freed
    large block, up to 32 MB, so the chunks' short-lived tensors then come from the heap,
    which fragments: a 10^4-atom water box peaked at 1.94 GB resident against 0.68 GB with
    the threshold fixed, for 8 s more system time (page faults) on 12 s of user time
    (docs/benchmarks.md, Large systems)."""
    global _malloc_set
    if _malloc_set:
        return
    _malloc_set = True
    if os.environ.get(LEAN_MALLOC_ENV, "1") == "0":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def should_chunk(model: torch.nn.Module, num_edges: int) -> bool:
    """Whether ``model`` evaluates a graph of ``num_edges`` edges in chunks: with an integer
    ``model.chunk_above``, above it (0: never); with :data:`AUTO`, above :data:`CHUNK_ABOVE`
    edges when the unchunked edge tensors (``molsym.memory.model_edge_floats``, times
    :data:`TRAINING_EDGE_FACTOR` when gradients of the weights are wanted) need more than
    :data:`AUTO_MEMORY_SHARE` of the memory available (``model.memory_limit`` if set, else
    ``molsym.memory.available_bytes``: $MOLSYM_MEMORY_LIMIT, MemAvailable, the cgroup)."""
    chunk_above = model.chunk_above
    if chunk_above != AUTO:
        return 0 < int(chunk_above) < num_edges
    if num_edges <= CHUNK_ABOVE:
        return False
    from molsym.memory import available_bytes, model_edge_floats

    size = next(model.parameters()).element_size()
    need = num_edges * model_edge_floats(model) * size
    if model.training and torch.is_grad_enabled():
        need *= TRAINING_EDGE_FACTOR
    room, _ = available_bytes(getattr(model, "memory_limit", None))
    return need > AUTO_MEMORY_SHARE * room


def edge_chunk_bounds(num_edges: int, chunk: int, paired: bool) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``chunk`` edges; with ``paired``
    (edges in paired order, :mod:`molsym.nn.pairs`) the bounds count pairs, of at most
    ``chunk // 2`` each, over the first half."""
    total = num_edges // 2 if paired else num_edges
    step = max(1, chunk // 2 if paired else chunk)
    for start in range(0, total, step):
        yield start, min(start + step, total)


def take_edges(edge_vec: torch.Tensor, edge_index: torch.Tensor, start: int, stop: int,
               paired: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge vectors (E_c, 3) and indices (2, E_c) of one chunk; paired: pairs ``start:stop``
    in both directions, still in paired order."""
    if not paired:
        return edge_vec[start:stop], edge_index[:, start:stop]
    half = edge_vec.shape[0] // 2
    vec = torch.cat([edge_vec[start:stop], edge_vec[half + start : half + stop]])
    index = torch.cat([edge_index[:, start:stop], edge_index[:, half + start : half + stop]], 1)
    return vec, index
