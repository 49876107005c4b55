"""``compile=True``: the torch.compile'd model gives the eager numbers, and batches of other
sizes reuse the compiled graph (dynamic shapes) instead of recompiling."""

import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule
from torch._dynamo.utils import counters

from molsym.inference.predictor import Entry, Predictor
from molsym.models import EquivariantModel


def tiny_model() -> EquivariantModel:
    """Seeded, untrained and as small as possible: compile time grows with the graph."""
    torch.manual_seed(2)
    return EquivariantModel(cutoff=4.0, elements=[1, 6, 8], num_channels=8, num_layers=1,
                            num_radial=4, radial_hidden=8, readout_hidden=8, l_max=1,
                            outputs=["energy", "forces", "dipole"]).double().eval()


@pytest.mark.slow
def test_compiled_predictor_equals_eager_without_recompiling():
    names = ["H2O", "CH4", "CH3OH", "CH3CH2OH", "H2O", "CH4", "CH3OH"]
    mols = [molecule(n) for n in names]
    for i, atoms in enumerate(mols):
        atoms.rattle(0.05, seed=i)
    # batch_atoms 15: batches of 3, 2 and 2 molecules with 14, 12 and 11 atoms
    eager = Predictor(tiny_model(), batch_atoms=15)
    compiled = Predictor(tiny_model(), batch_atoms=15, compile=True)
    graphs_before = counters["stats"]["unique_graphs"]
    got = compiled.run([Entry.from_atoms(a) for a in mols], forces=True)
    assert counters["stats"]["unique_graphs"] - graphs_before == 1  # one compile, 3 sizes
    ref = eager.run([Entry.from_atoms(a) for a in mols], forces=True)
    pd.testing.assert_frame_equal(compiled.table(got), eager.table(ref), rtol=1e-10, atol=1e-12)
    assert (compiled.table(got)["error"] == "").all()
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g.forces, r.forces, rtol=1e-10, atol=1e-12)


def _mols():
    mols = [molecule(n) for n in ["H2O", "CH3OH", "CH3CH2OH"]]
    for i, atoms in enumerate(mols):
        atoms.rattle(0.05, seed=i)
    return [Entry.from_atoms(a) for a in mols]


def test_auto_compile_leaves_small_structures_eager():
    """The default, ``compile="auto"``: batches below AUTO_COMPILE_EDGES edges run eager
    (nothing is compiled for a handful of molecules)."""
    from molsym.models.compiled import AUTO_COMPILE_EDGES, CompiledModel

    auto = Predictor(tiny_model())
    assert auto.compiled == "auto"
    assert isinstance(auto._forward, CompiledModel)
    assert auto._forward.eager_below == AUTO_COMPILE_EDGES
    frames_before = counters["stats"]["calls_captured"]
    got = auto.run(_mols(), forces=True)
    assert counters["stats"]["calls_captured"] == frames_before  # dynamo never ran
    ref = Predictor(tiny_model(), compile=False).run(_mols(), forces=True)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g.forces, r.forces)


def test_compile_refuses_unknown_modes():
    from molsym.errors import ConfigError

    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="compile must be one of"):
            Predictor(tiny_model(), compile=bad)


def test_a_failed_compile_falls_back_to_eager_once(caplog):
    """No C++ compiler (or any backend failure): a warning, then eager results for this and
    every later batch, instead of a traceback."""
    from torch._dynamo.exc import BackendCompilerFailed

    predictor = Predictor(tiny_model(), compile=True)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise BackendCompilerFailed(None, RuntimeError("no C++ compiler"), None)

    predictor._forward._compiled = broken
    with caplog.at_level("WARNING"):
        got = predictor.run(_mols(), forces=True)
        again = predictor.run(_mols(), forces=True)
    assert "torch.compile failed" in caplog.text and predictor._forward.failed
    assert len(calls) == 1
    ref = Predictor(tiny_model(), compile=False).run(_mols(), forces=True)
    for g, a, r in zip(got, again, ref, strict=True):
        assert not g.error
        np.testing.assert_array_equal(g.forces, r.forces)
        np.testing.assert_array_equal(a.forces, r.forces)


@pytest.mark.slow
def test_auto_compile_compiles_large_structures():
    """Above the threshold (lowered here, so the test stays small) the batch is compiled and
    gives the eager numbers."""
    auto = Predictor(tiny_model())
    auto._forward.eager_below = 10
    compiled, calls = auto._forward._compiled, []

    def counted(*args, **kwargs):
        calls.append(1)
        return compiled(*args, **kwargs)

    auto._forward._compiled = counted
    got = auto.run(_mols(), forces=True)
    assert calls and not auto._forward.failed
    ref = Predictor(tiny_model(), compile=False).run(_mols(), forces=True)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g.forces, r.forces, rtol=1e-10, atol=1e-12)
