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
Periodic lists pair too: the reverse of the edge to image S of j is the edge from j to image -S
of i (:func:`forward_edges`), so a paired periodic call passes the cell shifts of its half.
"""

from __future__ import annotations

import numpy as np
import torch


def one_direction(edge_index: torch.Tensor) -> torch.Tensor | None:
    """The edges i->j with i < j of a non-periodic ``edge_index`` (2, E), (2, E/2), when every
    edge has its reverse j->i (and no edge is a self-loop); otherwise None. Periodic lists:
    :func:`forward_edges` with their cell shifts. Runs in numpy (microseconds per op, not
    torch's tens)."""
    first = forward_edges(edge_index)
    return None if first is None else edge_index[:, torch.from_numpy(first).to(edge_index.device)]


def forward_edges(edge_index: torch.Tensor, cell_shifts: torch.Tensor | None = None
                  ) -> np.ndarray | None:
    """Positions (E/2,) of one edge of each pair of opposite edges, when every edge has its
    reverse; otherwise None. Without ``cell_shifts`` the reverse of i->j is j->i and the edge
    kept is the one with i < j; with them (E, 3) (integer image shifts), the reverse of
    (i, j, S) is (j, i, -S), and the edge kept is the one with i < j, or, between images of
    one atom, the one whose first non-zero shift component is positive."""
    num_edges = int(edge_index.shape[1])
    if num_edges == 0 or num_edges % 2:
        return None
    centre, neighbour = edge_index.detach().cpu().numpy()
    if cell_shifts is None:
        return _forward_index_pairs(centre, neighbour)
    raw = cell_shifts.detach().cpu().numpy()
    shifts = np.rint(raw).astype(np.int64)
    if raw.shape != (num_edges, 3) or not np.array_equal(shifts, raw):
        return None
    return _forward_periodic_pairs(centre, neighbour, shifts)


def _forward_index_pairs(centre: np.ndarray, neighbour: np.ndarray) -> np.ndarray | None:
    num_edges = centre.shape[0]
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
    return first


def _forward_periodic_pairs(centre: np.ndarray, neighbour: np.ndarray, shifts: np.ndarray
                            ) -> np.ndarray | None:
    num_edges = centre.shape[0]
    sign = np.sign(shifts)
    lead = np.where(sign[:, 0] != 0, sign[:, 0], np.where(sign[:, 1] != 0, sign[:, 1], sign[:, 2]))
    same = centre == neighbour
    forward = (centre < neighbour) | (same & (lead > 0))
    backward = (centre > neighbour) | (same & (lead < 0))
    if not (forward | backward).all():  # a self-loop (an atom to itself, no shift)
        return None
    # every edge written as its pair's forward edge; sorted so position k of each half is a pair
    a, b = np.where(forward, centre, neighbour), np.where(forward, neighbour, centre)
    s = np.where(forward[:, None], shifts, -shifts)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], b, a, backward))
    first, second = order[: num_edges // 2], order[num_edges // 2 :]
    if not (
        forward[first].all() and backward[second].all()
        and np.array_equal(a[first], a[second]) and np.array_equal(b[first], b[second])
        and np.array_equal(s[first], s[second])
    ):
        return None
    return first


def default_pairing(edge_index: torch.Tensor, cell_shifts: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """What the models do when the caller does not say: ``(one edge per pair, its cell shifts,
    True)`` for a symmetric edge list on the CPU (periodic or not), else ``(edge_index,
    cell_shifts, False)`` (use the list as given). On a GPU the check would copy the edges to
    the host and wait for the device every step (not measured yet), so GPU callers pass
    ``paired_edges`` themselves if they want it."""
    traced = type(edge_index) is not torch.Tensor  # a fake or functional tensor: no data
    first = (None if traced or edge_index.device.type != "cpu"
             else forward_edges(edge_index, cell_shifts))
    if first is None:
        return edge_index, cell_shifts, False
    index = torch.from_numpy(first)
    half_shifts = None if cell_shifts is None else cell_shifts.index_select(0, index)
    return edge_index.index_select(1, index), half_shifts, True


def with_reverse_edges(half: torch.Tensor) -> torch.Tensor:
    """(2, E/2) edges -> (2, E) in paired order: the given edges, then their reverses."""
    return torch.cat([half, half.flip(0)], dim=1)
