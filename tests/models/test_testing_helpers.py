"""The helpers of molsym.testing must fail on models that break the property they check."""

import pytest
import torch
from torch import nn

from molsym import testing
from molsym.models import EquivariantModel
from molsym.nn.scatter import scatter_sum
from tests.models.conftest import ELEMENTS, ethanol


class PseudoscalarModel(EquivariantModel):
    """Adds a triple product of per-atom vectors: rotation-invariant, odd under reflection."""

    def representation(self, species, edge_vec, edge_index, paired=False):
        energy, s, v = super().representation(species, edge_vec, edge_index, paired)
        d = edge_vec.norm(dim=-1, keepdim=True)
        n = species.shape[0]
        cols = [scatter_sum(edge_vec * d**k, edge_index[0], n) for k in range(3)]
        triple = torch.linalg.det(torch.stack(cols, dim=-1))
        return energy + 0.1 * triple, s, v


class StepCutoff(nn.Module):
    def __init__(self, cutoff):
        super().__init__()
        self.cutoff = cutoff

    def forward(self, d):
        return (d < self.cutoff).to(d.dtype)


class ScaledForces(nn.Module):
    """Wraps a model and returns forces that are not -dE/dpos."""

    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor, self.cutoff = model, factor, model.cutoff

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        if "forces" in out:
            out["forces"] = out["forces"] * self.factor
        return out


def small(cls=EquivariantModel, **kw):
    torch.manual_seed(0)
    kw = dict(cutoff=3.5, elements=ELEMENTS, num_channels=8, l_max=1, energy_scale=1.0) | kw
    return cls(**kw).double()


def test_reflection_check_catches_pseudoscalar_energy():
    model = small(PseudoscalarModel)
    with pytest.raises(AssertionError, match="energy under improper rotation"):
        testing.assert_e3_equivariant(model, ethanol(), trials=1)


def test_proper_rotations_alone_do_not_see_the_pseudoscalar():
    model = small(PseudoscalarModel)
    atoms = ethanol()
    ref = testing.evaluate(model, [atoms])["energy"]
    rot = testing.random_orthogonal(__import__("numpy").random.default_rng(0), proper=True)
    moved = testing.evaluate(model, [testing.transformed(atoms, rot)])["energy"]
    testing.assert_close(moved, ref, 1e-10, "energy under a proper rotation")


def test_smoothness_check_catches_a_hard_cutoff():
    model = small()
    model.envelope = StepCutoff(model.cutoff)
    with pytest.raises(AssertionError, match="across the cutoff"):
        testing.assert_smooth_at_cutoff(model, ethanol(), delta=1e-3, tol=1e-6)


def test_finite_difference_check_catches_non_conservative_forces():
    model = ScaledForces(small(), 1.01)
    with pytest.raises(AssertionError, match="finite differences"):
        testing.assert_forces_match_finite_differences(model, ethanol(), atom_indices=[0, 1])


def test_assert_close_reports_shape_mismatch():
    with pytest.raises(AssertionError, match="shape"):
        testing.assert_close(torch.zeros(3), torch.zeros(4), 1e-8, "x")


def test_random_orthogonal_determinants():
    import numpy as np

    rng = np.random.default_rng(1)
    for proper in (True, False):
        q = testing.random_orthogonal(rng, proper)
        np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(q) == pytest.approx(1.0 if proper else -1.0)
