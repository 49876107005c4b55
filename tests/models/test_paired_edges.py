"""Radial networks once per pair of opposite edges give the results of every edge."""

import pytest
import torch
from ase.build import molecule

from molsym.models import predict_batch
from molsym.models.compiled import compile_model
from molsym.nn.pairs import forward_edges, one_direction
from tests.models.conftest import CONFIGS, build_model, ethanol, periodic_water
from tests.models.test_api import batch_of


def run(model, b, **kwargs):
    return model(b.z, b.pos, b.edge_index, b.batch, b.num_graphs, **kwargs)


def assert_same_outputs_and_gradients(model, ref, auto, given, loss_keys):
    """Every output of ``auto`` and ``given`` equals ``ref``'s, and the parameter gradients of
    a loss on ``loss_keys`` through ``auto`` equal those through ``ref``."""
    for key in ref:
        torch.testing.assert_close(auto[key], ref[key], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(given[key], ref[key], rtol=1e-12, atol=1e-12)
    grads = []
    for out in (auto, ref):
        loss = sum(out[k].square().sum() for k in loss_keys)
        grads.append(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True))
    for g_auto, g_ref in zip(*grads, strict=True):
        if g_ref is not None:
            torch.testing.assert_close(g_auto, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_paired_and_unpaired_edges_agree(config):
    model = build_model(config, torch.float64).train()
    b = batch_of([ethanol(), molecule("H2O"), ethanol(seed=2)])
    auto, unpaired = run(model, b), run(model, b, paired_edges=False)
    given = run(model, b.clone().update({"edge_index": one_direction(b.edge_index)}),
                paired_edges=True)
    # parameter gradients through the force loss (training) match too
    assert_same_outputs_and_gradients(model, unpaired, auto, given, ("energy", "forces"))


def test_graphs_carry_one_edge_per_pair():
    b = batch_of([ethanol(), molecule("H2O"), molecule("H")])
    half = b.pair_index
    assert 2 * half.shape[1] == b.edge_index.shape[1]
    assert bool((half[0] < half[1]).all())
    both = torch.cat([half, half.flip(0)], dim=1)
    assert sorted(map(tuple, both.T.tolist())) == sorted(map(tuple, b.edge_index.T.tolist()))
    assert batch_of([periodic_water()]).pair_index.shape == (2, 0)


@pytest.mark.parametrize("config", ["equivariant-l1", "invariant"])
def test_predict_batch_passes_the_graphs_pairs(config):
    model = build_model(config, torch.float64)
    b = batch_of([ethanol(), molecule("H2O"), ethanol(seed=2)])
    ref = run(model, b, paired_edges=False)
    got = predict_batch(model, b)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-12, atol=1e-12)
    # the field is what the model gets: a pair list with one pair swapped for a duplicate of
    # another (same count) changes the result, a list that does not cover the edges is ignored
    wrong = b.pair_index.clone()
    wrong[:, 0] = wrong[:, 1]
    changed = predict_batch(model, b.clone().update({"pair_index": wrong}))["forces"]
    assert float((changed - ref["forces"]).abs().max()) > 1e-6
    short = b.clone().update({"pair_index": b.pair_index[:, 1:]})
    torch.testing.assert_close(predict_batch(model, short)["forces"], ref["forces"],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", ["equivariant-l1", "invariant"])
def test_periodic_graphs_pair_with_their_shifts(config):
    """The reverse of the edge to image S of j is j's edge to image -S of i: paired periodic
    calls (found by the model, or given with the half's shifts) give every output, the stress
    and the parameter gradients of the unpaired call; a box this small has edges between
    images of one atom, which pair too."""
    model = build_model(config, torch.float64).train()
    b = batch_of([periodic_water(), periodic_water()])
    same_atom = b.edge_index[0] == b.edge_index[1]
    assert bool(same_atom.any())
    common = dict(cell=b.cell, compute_stress=True)
    unpaired = run(model, b, cell_shifts=b.cell_shifts, paired_edges=False, **common)
    auto = run(model, b, cell_shifts=b.cell_shifts, **common)
    first = torch.from_numpy(forward_edges(b.edge_index, b.cell_shifts))
    given = model(b.z, b.pos, b.edge_index[:, first], b.batch, b.num_graphs,
                  cell_shifts=b.cell_shifts[first], paired_edges=True, **common)
    assert_same_outputs_and_gradients(model, unpaired, auto, given, ("forces", "stress"))
    with pytest.raises(ValueError, match="cell_shifts has"):
        model(b.z, b.pos, b.edge_index[:, first], b.batch, b.num_graphs,
              cell_shifts=b.cell_shifts, paired_edges=True, **common)


@pytest.mark.slow
def test_compiled_model_pairs_edges_before_the_graph():
    model = build_model("equivariant-l2", torch.float64).eval()
    b = batch_of([ethanol(), molecule("H2O")])
    ref = run(model, b, paired_edges=False)
    got = compile_model(model)(b.z, b.pos, b.edge_index, b.batch, b.num_graphs)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-9, atol=1e-10)
