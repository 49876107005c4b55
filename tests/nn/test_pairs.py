"""Pairing of opposite edges (molsym.nn.pairs): found only when every edge has its reverse."""

import pytest
import torch
from ase.build import molecule

from molsym.data.graph import atoms_to_graph
from molsym.nn.cartesian import num_components
from molsym.nn.interaction import CartesianInteraction, CFConvInteraction
from molsym.nn.pairs import default_pairing, forward_edges, one_direction, with_reverse_edges


def edge_set(edge_index: torch.Tensor) -> list[tuple[int, int]]:
    return sorted(map(tuple, edge_index.t().tolist()))


def test_one_direction_of_a_real_neighbour_list_rebuilds_it():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    edge_index = atoms_to_graph(atoms, 3.0).edge_index
    half = one_direction(edge_index)
    assert half is not None and half.shape == (2, edge_index.shape[1] // 2)
    assert bool((half[0] < half[1]).all())
    full = with_reverse_edges(half)
    assert edge_set(full) == edge_set(edge_index)
    n = half.shape[1]
    assert torch.equal(full[:, n:], full[:, :n].flip(0))  # paired order


def test_edge_lists_without_every_reverse_are_not_paired():
    sym = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    assert one_direction(sym) is not None
    assert one_direction(sym[:, :3]) is None  # odd: one edge has no reverse
    assert one_direction(torch.tensor([[0, 1], [1, 2]])) is None  # even, but one-way edges
    assert one_direction(torch.tensor([[0, 1, 2, 2], [1, 0, 2, 2]])) is None  # self-loops
    assert one_direction(torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])) is not None  # any order
    assert one_direction(torch.zeros(2, 0, dtype=torch.long)) is None


def test_default_pairing_only_for_cpu_edge_lists():
    sym = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    half, shifts, paired = default_pairing(sym)
    assert paired and shifts is None and torch.equal(half, torch.tensor([[0, 1], [1, 2]]))
    meta = sym.to("meta")  # not on the CPU
    same, shifts, paired = default_pairing(meta)
    assert not paired and same is meta


def periodic_box():
    atoms = molecule("H2O")
    atoms.set_cell([3.2, 3.4, 3.6])
    atoms.pbc = True
    atoms.rattle(0.05, seed=2)
    graph = atoms_to_graph(atoms, 4.0)
    return graph.edge_index, graph.cell_shifts


def test_periodic_edges_pair_with_opposite_shifts():
    edge_index, shifts = periodic_box()
    first = forward_edges(edge_index, shifts)
    assert first is not None and first.shape == (edge_index.shape[1] // 2,)
    half, half_shifts, paired = default_pairing(edge_index, shifts)
    assert paired and torch.equal(half, edge_index[:, first])
    full = with_reverse_edges(half)
    full_shifts = torch.cat([half_shifts, -half_shifts])
    rows = lambda e, s: sorted(zip(map(tuple, e.t().tolist()), map(tuple, s.tolist())))  # noqa
    assert rows(full, full_shifts) == rows(edge_index, shifts)
    same = half[0] == half[1]  # images of one atom: the kept one has a positive lead shift
    assert bool(same.any())
    lead = [next(v for v in row if v != 0) for row in half_shifts[same].tolist()]
    assert all(v > 0 for v in lead)


def test_periodic_lists_without_every_reverse_are_not_paired():
    edge_index, shifts = periodic_box()
    assert forward_edges(edge_index, shifts) is not None
    flipped = shifts.clone()
    k = int(torch.nonzero(shifts.abs().sum(1) > 0)[0])
    flipped[k] = -flipped[k]  # its reverse is now missing
    assert forward_edges(edge_index, flipped) is None
    assert forward_edges(edge_index, shifts + 0.5) is None  # not integer shifts
    assert forward_edges(torch.tensor([[0, 0], [0, 0]]), torch.zeros(2, 3)) is None  # self-loops
    assert default_pairing(edge_index, flipped)[2] is False


@pytest.mark.parametrize("l_in,l_max", [(0, 0), (0, 1), (1, 1), (0, 2), (2, 2)])
def test_interactions_broadcast_one_weight_row_per_pair(l_in, l_max):
    """Weights given once per pair (paired order) act as the same rows repeated for both
    directions, in the equivariant and the SchNet-style interaction."""
    torch.manual_seed(0)
    half = torch.tensor([[0, 0, 1, 2], [1, 3, 2, 3]])
    edges = with_reverse_edges(half)
    c, n = 4, 4
    unit = torch.nn.functional.normalize(torch.randn(half.shape[1], 3, dtype=torch.float64), dim=1)
    unit = torch.cat([unit, -unit]).t()
    inter = CartesianInteraction(c, l_in, l_max, avg_num_neighbors=2.0).double()
    h = torch.randn(num_components(inter.l_in), n, c, dtype=torch.float64)
    w = torch.randn(half.shape[1], inter.num_paths * c, dtype=torch.float64)
    torch.testing.assert_close(inter(h, unit, w, edges, paired=True),
                               inter(h, unit, torch.cat([w, w]), edges), rtol=1e-12, atol=1e-12)
    conv = CFConvInteraction(c, avg_num_neighbors=2.0).double()
    s, w1 = h[0], w[:, :c]
    torch.testing.assert_close(conv(s, w1, edges, paired=True),
                               conv(s, torch.cat([w1, w1]), edges), rtol=1e-12, atol=1e-12)
