"""``torch.compile`` of the models (molsym.models.compiled): one graph without breaks, and the
eager numbers with 2 threads, in inference and in training (parameter gradients of a force
loss through the compiled backward)."""

import pytest
import torch
from ase.build import molecule

from molsym.models import predict_batch
from molsym.models.compiled import compile_model
from tests.models.conftest import build_model, ethanol
from tests.models.test_api import batch_of


@pytest.fixture
def two_threads():
    # the Inductor loop-tail bug that molsym.models.compiled works around needs > 1 thread
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_compiled_inference_matches_eager(two_threads):
    model = build_model("equivariant-l1", torch.float32).eval()
    b = batch_of([ethanol(), molecule("H2O")], dtype=torch.float32)
    args = (b.z, b.pos, b.edge_index, b.batch, b.num_graphs)
    explained = torch._dynamo.explain(model)(*args)
    assert explained.graph_break_count == 0, explained.break_reasons
    ref = model(*args)
    got = compile_model(model)(*args)
    assert set(got) == set(ref)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_gradients_match_eager(two_threads):
    """The loss and every parameter gradient of an energy + force loss, compiled vs eager, for
    two batches of different sizes (one compile)."""
    model = build_model("equivariant-l2", torch.float32).train()
    compiled = compile_model(model)
    batches = [batch_of([ethanol(0), molecule("H2O")], dtype=torch.float32),
               batch_of([ethanol(1), ethanol(2), molecule("CH4")], dtype=torch.float32)]

    def loss_and_grads(m, b):
        model.zero_grad()
        out = predict_batch(m, b)
        loss = out["energy"].pow(2).mean() + out["forces"].pow(2).mean()
        loss.backward()
        # heads outside the loss: None eagerly, zeros from a compiled backward
        return loss.detach(), {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                               for n, p in model.named_parameters()}

    for b in batches:
        ref_loss, ref_grads = loss_and_grads(model, b)
        got_loss, got_grads = loss_and_grads(compiled, b)
        torch.testing.assert_close(got_loss, ref_loss, rtol=1e-4, atol=1e-6)
        for name, grad in ref_grads.items():
            scale = grad.abs().max().item() + 1e-6
            torch.testing.assert_close(got_grads[name] / scale, grad / scale, rtol=0, atol=2e-4,
                                       msg=lambda m, name=name: f"{name}: {m}")
