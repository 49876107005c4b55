"""``torch.compile`` of the models (molsym.models.compiled): one graph without breaks and the
eager numbers with 2 threads. Compiled training (an l_max 2 model through MolsymModule) is
checked in tests/training/test_compiled_training.py."""

import pytest
import torch
from ase.build import molecule

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
