"""E(3) symmetry and physics tests, for every model configuration, in float64 and float32."""

import pytest
import torch
from ase.build import molecule

from molsym import testing
from tests.models.conftest import build_model, ethanol, periodic_water


@pytest.fixture(scope="module")
def model(config, dtype_tol):
    torch.manual_seed(0)
    return build_model(config, dtype_tol[0])


def test_rotations_reflections_translations(model, dtype_tol):
    testing.assert_e3_equivariant(model, ethanol(), trials=2, tol=dtype_tol[1])


def test_energy_invariant_and_forces_equivariant_for_a_charged_free_molecule(model, dtype_tol):
    atoms = molecule("NH3")
    atoms.rattle(0.1, seed=5)
    testing.assert_invariant_energy(model, atoms, trials=1, tol=dtype_tol[1], seed=1)
    testing.assert_equivariant_forces(model, atoms, trials=1, tol=dtype_tol[1], seed=2)


def test_periodic_symmetry_including_stress(model, dtype_tol):
    testing.assert_e3_equivariant(model, periodic_water(), trials=1, tol=dtype_tol[1])


def test_permutation(model, dtype_tol):
    testing.assert_permutation_equivariant(model, ethanol(1), tol=dtype_tol[1])


def test_batch_consistent(model, dtype_tol):
    testing.assert_batch_consistent(
        model, [ethanol(2), molecule("H2O"), periodic_water()], tol=dtype_tol[1]
    )


def test_separable(model, dtype_tol):
    testing.assert_separable(model, ethanol(3), molecule("HCN"), tol=dtype_tol[1])


def test_forces_are_finite_differences(model, dtype_tol):
    if dtype_tol[0] != torch.float64:
        pytest.skip("float32 resolves a -5000 eV energy to ~5e-4 eV: too coarse for differences")
    testing.assert_forces_match_finite_differences(model, ethanol(4), step=2e-5, tol=1e-6)


def test_stress_is_finite_difference_of_strain(model, dtype_tol):
    if dtype_tol[0] != torch.float64:
        pytest.skip("finite differences of strain need float64")
    testing.assert_stress_matches_finite_differences(model, periodic_water(), step=1e-5, tol=1e-7)


def test_smooth_at_cutoff(model, dtype_tol):
    tol = 1e-7 if dtype_tol[0] == torch.float64 else 1e-3
    for probe in (1, 8):
        testing.assert_smooth_at_cutoff(model, ethanol(5), probe=probe, delta=1e-3, tol=tol)
