"""QM9's dipole magnitude from the equivariant dipole vector: zero where symmetry says so."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.models import EquivariantModel, InvariantModel, predict_batch

OUTPUTS = ["energy", "homo", "dipole_moment"]


def _model(cls, **kw):
    torch.manual_seed(0)
    return cls(cutoff=5.0, elements=[1, 6, 7, 8, 9], outputs=OUTPUTS, num_channels=16,
               **kw).double().eval()


def _symmetric_molecules():
    co2 = Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]])
    n2 = Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.10]])
    # octahedral CF6-like shape (F on +-x, +-y, +-z): SF6's symmetry with covered elements
    d = 1.56
    oct_ = Atoms("CF6", positions=[[0, 0, 0], [d, 0, 0], [-d, 0, 0], [0, d, 0],
                                   [0, -d, 0], [0, 0, d], [0, 0, -d]])
    return {"CH4": molecule("CH4"), "CO2": co2, "N2": n2, "benzene": molecule("C6H6"),
            "CF6": oct_}


def _moment(model, atoms):
    graph = atoms_to_graph(atoms, model.cutoff, dtype=torch.float64)
    with torch.no_grad():
        return predict_batch(model, graph, compute_forces=False)[keys.DIPOLE_MOMENT]


@pytest.mark.parametrize("cls,kw", [(EquivariantModel, {"l_max": 1}),
                                    (EquivariantModel, {"l_max": 2}), (InvariantModel, {})])
def test_symmetric_molecules_have_zero_dipole_moment(cls, kw):
    model = _model(cls, **kw)
    for name, atoms in _symmetric_molecules().items():
        atoms = atoms.copy()
        atoms.translate([3.1, -2.0, 0.7])
        assert float(_moment(model, atoms)) < 1e-9, name
    water = _moment(model, molecule("H2O"))
    assert float(water) > 1e-6  # an untrained model still gives polar molecules a dipole


def test_dipole_moment_is_the_norm_of_the_dipole_vector_and_invariant():
    model = _model(EquivariantModel, l_max=1)
    model.outputs = [*OUTPUTS, "dipole"]  # ask for the vector too (same heads)
    atoms = molecule("CH3CH2OH")
    with torch.no_grad():
        out = predict_batch(model, atoms_to_graph(atoms, 5.0, dtype=torch.float64),
                            compute_forces=False)
    assert torch.allclose(out["dipole_moment"], out["dipole"].norm(dim=-1))
    rot = atoms.copy()
    rot.rotate(73, (0.3, 1.0, -0.2), center="COM")
    rot.translate([10, 0, 0])
    assert torch.allclose(_moment(model, rot), out["dipole_moment"], atol=1e-10)


def test_gradient_through_zero_dipole_is_finite():
    model = _model(EquivariantModel, l_max=1).train()
    graph = atoms_to_graph(molecule("CH4"), 5.0, dtype=torch.float64)
    out = predict_batch(model, graph, compute_forces=False)
    out["dipole_moment"].sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_files_saved_with_a_scalar_dipole_head_load_unchanged(tmp_path):
    from molsym.deploy.model_file import load_model, save_model

    old = _model(EquivariantModel, l_max=1, dipole_moment_from_vector=False)
    payload_path = save_model(old, tmp_path / "old.pt")
    raw = torch.load(payload_path, weights_only=True)
    del raw["config"]["dipole_moment_from_vector"]  # as written before the option existed
    torch.save(raw, payload_path)
    loaded = load_model(payload_path)
    assert not loaded.dipole_moment_from_vector
    atoms = molecule("CH4")
    np.testing.assert_allclose(_moment(loaded.double(), atoms), _moment(old, atoms))
    assert float(_moment(old, atoms)) > 1e-6  # the scalar head does not know the symmetry
