"""MolsymCalculator: equals the model, forces/stress are energy derivatives, and a small
model trained on GFN2-xTB labels runs stable NVE dynamics and geometry optimisation."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from torch_geometric.data import Batch

from molsym import MolsymCalculator
from molsym.data.graph import atoms_to_graph
from molsym.errors import InputError
from molsym.models import MODEL_CLASSES, predict_batch

ETHANOL = molecule("CH3CH2OH")


def make_model(name, elements=(1, 6, 8), outputs=("energy", "forces", "dipole"), seed=0):
    torch.manual_seed(seed)
    kwargs = dict(cutoff=4.0, elements=list(elements), outputs=list(outputs), num_channels=16,
                  num_layers=2, num_radial=8, radial_hidden=16, readout_hidden=16)
    return MODEL_CLASSES[name](**kwargs).double().eval()


@pytest.mark.parametrize("name", sorted(MODEL_CLASSES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_calculator_equals_direct_model_call(name, dtype):
    model = make_model(name)
    atoms = ETHANOL.copy()
    atoms.rattle(0.05, seed=3)
    atoms.calc = MolsymCalculator(model, dtype=dtype)
    tdtype = getattr(torch, dtype)
    ref_model = make_model(name).to(tdtype)
    batch = Batch.from_data_list([atoms_to_graph(atoms, 4.0, tdtype)])
    out = predict_batch(ref_model, batch, compute_forces=True)
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert atoms.get_potential_energy() == pytest.approx(out["energy"].item(), rel=tol, abs=tol)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=tol)
    np.testing.assert_allclose(atoms.get_dipole_moment(), out["dipole"].detach()[0].numpy(),
                               atol=tol)


@pytest.mark.parametrize("name", sorted(MODEL_CLASSES))
def test_forces_and_stress_are_energy_derivatives(name):
    atoms = ETHANOL.copy()
    atoms.rattle(0.05, seed=4)
    atoms.calc = MolsymCalculator(make_model(name))
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), numerical, atol=1e-6)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    crystal = bulk("Cu", "fcc", a=3.6) * (2, 2, 1)
    crystal.rattle(0.05, seed=5)
    crystal.calc = MolsymCalculator(make_model(name, elements=[29], outputs=["energy", "forces"]))
    stress = crystal.get_stress()
    numerical = calculate_numerical_stress(crystal, eps=1e-5)
    np.testing.assert_allclose(stress, numerical, atol=1e-7)


def test_model_without_forces_gives_energy_and_a_clear_forces_error():
    atoms = ETHANOL.copy()
    atoms.calc = MolsymCalculator(make_model("invariant", outputs=["energy", "gap"]))
    assert np.isfinite(atoms.get_potential_energy())
    assert np.isfinite(atoms.calc.results["gap"])
    with pytest.raises(PropertyNotImplementedError, match="no forces"):
        atoms.get_forces()


def test_unknown_element_is_a_clear_error():
    atoms = molecule("SiH4")
    atoms.calc = MolsymCalculator(make_model("invariant"))
    with pytest.raises(InputError, match="Si"):
        atoms.get_potential_energy()


# --- a small trained model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """Ethanol model fitted in a few seconds to GFN2-xTB energies and forces of 48 distorted
    geometries around the xTB minimum; returns (model, xTB-relaxed ethanol)."""
    from tblite.ase import TBLite

    ref = ETHANOL.copy()
    ref.calc = TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(ref, logfile=None).run(fmax=0.01)
    e0 = ref.get_potential_energy()
    rng = np.random.default_rng(0)
    graphs = []
    for k in range(48):
        frame = ref.copy()
        frame.positions += rng.normal(0.0, 0.04 + 0.02 * (k % 4), frame.positions.shape)
        frame.calc = TBLite(method="GFN2-xTB", verbosity=0)
        frame.info["energy"] = frame.get_potential_energy()
        frame.arrays["forces"] = frame.get_forces()
        graphs.append(atoms_to_graph(frame, 4.0, torch.float64))
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    model = MODEL_CLASSES["invariant"](
        cutoff=4.0, elements=[1, 6, 8], outputs=["energy", "forces"], num_channels=16,
        num_layers=2, num_radial=8, radial_hidden=16, readout_hidden=16,
        atomic_energies={"1": e0 / 9, "6": e0 / 9, "8": e0 / 9},
    ).double()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(150):
        out = predict_batch(model, batch, compute_forces=True)
        loss = ((out["energy"] - batch.energy) ** 2).mean() / 9 + 10 * (
            (out["forces"] - batch.forces) ** 2
        ).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    force_rmse = ((out["forces"] - batch.forces) ** 2).mean().sqrt().item()
    assert force_rmse < 0.25 * batch.forces.std().item()  # it did learn the surface
    ref.calc = None
    return model.eval(), ref


def test_bfgs_converges_on_a_distorted_molecule(trained):
    model, ref = trained
    atoms = ref.copy()
    atoms.rattle(0.1, seed=7)
    atoms.calc = MolsymCalculator(model)
    start = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=300)
    assert np.abs(atoms.get_forces()).max() < 0.01 * np.sqrt(3)
    assert atoms.get_potential_energy() < start
    bonds = atoms.get_all_distances()[0, 1]  # C-C stays a bond
    assert 1.3 < bonds < 1.7


def test_nve_md_conserves_total_energy(trained):
    """300 K ethanol, velocity Verlet, 0.25 fs x 400 steps (100 fs), float64: the total energy
    drifts by less than 5 meV (max |E_tot(t) - E_tot(0)|) while the kinetic energy swings by
    far more, so the bound measures conservation, not a frozen molecule."""
    model, ref = trained
    atoms = ref.copy()
    atoms.calc = MolsymCalculator(model, dtype="float64")
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(1))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    total, kinetic = [], []

    def record():
        total.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())

    dyn.attach(record, interval=1)
    dyn.run(400)
    drift = np.max(np.abs(np.array(total) - total[0]))
    swing = np.ptp(kinetic)
    assert swing > 0.05  # the molecule moves (kinetic energy swings by > 50 meV)
    print(f"drift {drift * 1e3:.3f} meV, kinetic swing {swing * 1e3:.1f} meV")
    assert drift < 5e-3, f"total energy drift {drift * 1e3:.2f} meV"


@pytest.mark.slow
def test_compiled_calculator_equals_eager_and_compiles_once():
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = MODEL_CLASSES["equivariant"](cutoff=4.0, elements=[1, 6, 8], num_channels=8,
                                         num_layers=1, num_radial=4, radial_hidden=8,
                                         readout_hidden=8, l_max=1,
                                         outputs=["energy", "forces", "dipole"]).double()
    eager, compiled = MolsymCalculator(model), MolsymCalculator(model, compile=True)
    graphs_before = counters["stats"]["unique_graphs"]
    # two geometries of ethanol, then methanol: one compile for all three
    for seed, mol in [(1, ETHANOL), (2, ETHANOL), (3, molecule("CH3OH"))]:
        atoms = mol.copy()
        atoms.rattle(0.1, seed=seed)
        eager.calculate(atoms, ["energy", "forces"])
        compiled.calculate(atoms, ["energy", "forces"])
        ref, got = eager.results, compiled.results
        assert got["energy"] == pytest.approx(ref["energy"], rel=1e-10)
        np.testing.assert_allclose(got["forces"], ref["forces"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got["dipole"], ref["dipole"], rtol=1e-10, atol=1e-12)
    assert counters["stats"]["unique_graphs"] - graphs_before == 1


@pytest.mark.slow
def test_compiled_calculator_on_a_periodic_box_equals_eager_with_stress():
    """The path ``compile="auto"`` takes for large boxes: periodic edges paired (reverse =
    negated shift) outside the compiled graph, forces and stress inside it."""
    crystal = bulk("Cu", "fcc", a=3.6) * (2, 2, 1)
    crystal.rattle(0.05, seed=6)
    model = make_model("equivariant", elements=[29], outputs=["energy", "forces"])
    eager, compiled = MolsymCalculator(model, compile=False), MolsymCalculator(model,
                                                                               compile=True)
    for calc in (eager, compiled):
        calc.calculate(crystal, ["energy", "forces", "stress"])
    ref, got = eager.results, compiled.results
    assert got["energy"] == pytest.approx(ref["energy"], rel=1e-10)
    np.testing.assert_allclose(got["forces"], ref["forces"], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got["stress"], ref["stress"], rtol=1e-9, atol=1e-11)


def test_committee_spread_reaches_the_results():
    from ase.build import molecule

    from molsym.models import EnsembleModel

    members = [MODEL_CLASSES["equivariant"](cutoff=4.0, elements=[1, 6, 8], num_channels=8,
                                            l_max=1, outputs=["energy", "forces"])
               for _ in range(3)]
    for seed, m in enumerate(members):
        torch.manual_seed(seed)
        for p in m.parameters():
            p.data.normal_(0, 0.3)
    calc = MolsymCalculator(EnsembleModel.from_models(members).eval())
    atoms = molecule("CH3OH")
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert calc.results["energy_std"] > 0 and np.isfinite(energy)
    assert calc.results["forces_std"].shape == (len(atoms),)
    assert (calc.results["forces_std"] > 0).all()
