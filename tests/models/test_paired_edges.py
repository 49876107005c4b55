"""Radial networks once per pair of opposite edges give the results of every edge."""

import pytest
import torch
from ase.build import molecule

from molsym.models.compiled import compile_model
from molsym.nn.pairs import one_direction
from tests.models.conftest import CONFIGS, build_model, ethanol, periodic_water
from tests.models.test_api import batch_of


def run(model, b, **kwargs):
    return model(b.z, b.pos, b.edge_index, b.batch, b.num_graphs, **kwargs)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_paired_and_unpaired_edges_agree(config):
    model = build_model(config, torch.float64).train()
    b = batch_of([ethanol(), molecule("H2O"), ethanol(seed=2)])
    auto, unpaired = run(model, b), run(model, b, paired_edges=False)
    given = run(model, b.clone().update({"edge_index": one_direction(b.edge_index)}),
                paired_edges=True)
    for key in unpaired:
        torch.testing.assert_close(auto[key], unpaired[key], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(given[key], unpaired[key], rtol=1e-12, atol=1e-12)
    # parameter gradients through the force loss (training) match too
    grads = []
    for out in (auto, unpaired):
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        grads.append(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True))
    for g_auto, g_ref in zip(*grads, strict=True):
        if g_ref is not None:
            torch.testing.assert_close(g_auto, g_ref, rtol=1e-10, atol=1e-12)


def test_periodic_graphs_are_not_paired():
    model = build_model("equivariant-l1", torch.float64)
    b = batch_of([periodic_water()])
    with pytest.raises(ValueError, match="non-periodic"):
        model(b.z, b.pos, b.edge_index, b.batch, 1, cell=b.cell, cell_shifts=b.cell_shifts,
              paired_edges=True)


@pytest.mark.slow
def test_compiled_model_pairs_edges_before_the_graph():
    model = build_model("equivariant-l2", torch.float64).eval()
    b = batch_of([ethanol(), molecule("H2O")])
    ref = run(model, b, paired_edges=False)
    got = compile_model(model)(b.z, b.pos, b.edge_index, b.batch, b.num_graphs)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-9, atol=1e-10)
