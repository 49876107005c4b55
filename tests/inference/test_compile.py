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
