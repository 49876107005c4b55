"""Opposite edges evaluated once: ``r_ij = r_ji``, so ``R(r_ij) = R(r_ji)``.

A molecular neighbour list holds every pair twice (i->j and j->i). The radial network is the
largest matrix product of a training step, so the models run it once per pair. The caller
(eager code: the check reads the data, so it stays outside compiled graphs) keeps one edge of
each pair, :func:`one_direction` (``atoms_to_graph`` stores it as ``pair_index`` once per
molecule; ``predict_batch`` passes it on); the model rebuilds the full list in *paired order*,
:func:`with_reverse_edges` (edges ``E/2 + k`` are the reverses of edges ``k``); the radial
network runs on the first half only, and the interactions broadcast its rows over both halves
(viewing edge tensors as (2, E/2, ...), so no copy of the weights is made). Edge lists that are not
symmetric (self-loops, one-way edges) give None and are used as they are, with the same result.
"""

from __future__ import annotations

import numpy as np
import torch


def one_direction(edge_index: torch.Tensor) -> torch.Tensor | None:
    """The edges i->j with i < j of ``edge_index`` (2, E), (2, E/2), when every edge has its
    reverse j->i (and no edge is a self-loop); otherwise None.

    Only indices are compared: pass non-periodic graphs (periodic images differ by their cell
    shifts and are not paired). Runs in numpy (microseconds per op, not torch's tens).
    """
    num_edges = int(edge_index.shape[1])
    if num_edges == 0 or num_edges % 2:
        return None
    centre, neighbour = edge_index.detach().cpu().numpy()
    n = int(max(centre.max(), neighbour.max())) + 1
    low, high = np.minimum(centre, neighbour), np.maximum(centre, neighbour)
    # i < j edges first, each half in (low, high) order, so position k of each half is a pair
    key = (centre > neighbour).astype(np.int64) * (n * n) + low * n + high
    order = np.argsort(key, kind="stable")
    first, second = order[: num_edges // 2], order[num_edges // 2 :]
    if not (
        (centre[first] < neighbour[first]).all()
        and np.array_equal(centre[first], neighbour[second])
        and np.array_equal(neighbour[first], centre[second])
    ):
        return None
    return edge_index[:, torch.from_numpy(first).to(edge_index.device)]


def default_pairing(edge_index: torch.Tensor, periodic: bool) -> tuple[torch.Tensor, bool]:
    """What the models do when the caller does not say: ``(one edge per pair, True)`` for a
    symmetric, non-periodic edge list on the CPU, else ``(edge_index, False)`` (use the list as
    given). On a GPU the check would copy the edges to the host and wait for the device every
    step (not measured yet), so GPU callers pass ``paired_edges`` themselves if they want it."""
    half = None if periodic or edge_index.device.type != "cpu" else one_direction(edge_index)
    return (edge_index, False) if half is None else (half, True)


def with_reverse_edges(half: torch.Tensor) -> torch.Tensor:
    """(2, E/2) edges -> (2, E) in paired order: the given edges, then their reverses."""
    return torch.cat([half, half.flip(0)], dim=1)
