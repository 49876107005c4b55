"""molsym as an openmm-ml potential: OpenMM's energies and forces equal MolsymCalculator's
(molecule and periodic box, Reference and CPU platforms), NVE with VerletIntegrator conserves
energy, and an ML/MM system (one ML water in flexible TIP3P water) runs and conserves energy."""

from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

openmm = pytest.importorskip("openmm")
openmmml = pytest.importorskip("openmmml")

from openmm import app, unit  # noqa: E402
from openmmml import MLPotential  # noqa: E402

from molsym import MolsymCalculator  # noqa: E402
from molsym.deploy import save_model  # noqa: E402
from molsym.engines.openmm_potential import (  # noqa: E402
    ANGSTROM_PER_NM,
    KJ_PER_MOL_PER_EV,
    MolsymPotentialImplFactory,
    topology_from_atoms,
)
from molsym.models import MODEL_CLASSES  # noqa: E402

KJ_NM = unit.kilojoule_per_mole / unit.nanometer


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """The entry point registers 'molsym' once molsym is installed with this pyproject; an
    editable install made before the entry point existed lacks it, so register it here."""
    if "molsym" not in MLPotential._implFactories:
        MLPotential.registerImplFactory("molsym", MolsymPotentialImplFactory())


def make_model(name="invariant", elements=(1, 6, 8), energy_scale=1.0, seed=0):
    """Untrained, smooth, fixed seed; ``energy_scale`` makes its forces chemically stiff."""
    torch.manual_seed(seed)
    return MODEL_CLASSES[name](
        cutoff=4.0, elements=list(elements), outputs=["energy", "forces"], num_channels=16,
        num_layers=2, num_radial=8, radial_hidden=16, readout_hidden=16,
        energy_scale=energy_scale,
    ).double().eval()


def openmm_energy_forces(context, groups=-1):
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return energy, state.getForces(asNumpy=True).value_in_unit(KJ_NM)


def calculator_energy_forces(model, atoms):
    """MolsymCalculator's energy (kJ/mol) and forces (kJ/mol/nm)."""
    atoms = atoms.copy()
    atoms.calc = MolsymCalculator(model)
    return (atoms.get_potential_energy() * KJ_PER_MOL_PER_EV,
            atoms.get_forces() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM)


def test_entry_point_is_declared_and_found():
    found = entry_points(group="openmmml.potentials", name="molsym")
    if not found:
        pytest.skip("the installed molsym metadata predates the entry point: pip install -e .")
    (ep,) = found
    assert ep.load() is MolsymPotentialImplFactory


def test_needs_exactly_one_model_source():
    from molsym.errors import ConfigError

    with pytest.raises(ConfigError, match="modelPath"):
        MLPotential("molsym")


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("name", sorted(MODEL_CLASSES))
def test_energy_and_forces_equal_the_calculator(name, platform, tmp_path):
    model = make_model(name)
    path = tmp_path / "model.pt"
    save_model(model, path)
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    topology, positions = topology_from_atoms(atoms)
    system = MLPotential("molsym", modelPath=str(path)).createSystem(topology)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    energy, forces = openmm_energy_forces(context)
    ref_energy, ref_forces = calculator_energy_forces(model, atoms)
    assert energy == pytest.approx(ref_energy, rel=1e-5)
    np.testing.assert_allclose(forces, ref_forces, rtol=1e-5, atol=1e-5 * np.abs(ref_forces).max())


def test_periodic_box_equals_the_calculator():
    """Atoms outside the box and an image closer than the cutoff: OpenMM's wrapped positions
    and the box reach the model, which sees the same periodic system as the calculator."""
    model = make_model(elements=[29])
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(2)] * 3), -1).reshape(-1, 3) * 2.6
    crystal = Atoms("Cu8", positions=grid + rng.normal(0, 0.1, (8, 3)) + [0, 0, 4.0],
                    cell=np.diag([5.2, 5.2, 5.4]), pbc=True)
    topology, positions = topology_from_atoms(crystal)
    system = MLPotential("molsym", model=model).createSystem(topology)
    assert system.usesPeriodicBoundaryConditions()
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    energy, forces = openmm_energy_forces(context)
    ref_energy, ref_forces = calculator_energy_forces(model, crystal)
    assert energy == pytest.approx(ref_energy, rel=1e-5)
    np.testing.assert_allclose(forces, ref_forces, rtol=1e-5, atol=1e-5 * np.abs(ref_forces).max())


def total_energy_trace(context, integrator, steps, every=1):
    totals, kinetic = [], []
    for _ in range(steps // every):
        integrator.step(every)
        state = context.getState(getEnergy=True)
        ke = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        pe = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        totals.append(ke + pe)
        kinetic.append(ke)
    return np.array(totals), np.array(kinetic)


def test_nve_conserves_energy():
    """Ethanol, 300 K, VerletIntegrator 0.25 fs x 400 steps (100 fs), Reference platform, a
    stiff smooth random model (forces ~1 eV/Angstrom): the total energy stays within 0.5 kJ/mol
    (5 meV) while the kinetic energy swings by several kJ/mol."""
    model = make_model(energy_scale=20.0)
    atoms = molecule("CH3CH2OH")
    topology, positions = topology_from_atoms(atoms)
    system = MLPotential("molsym", model=model).createSystem(topology)
    integrator = openmm.VerletIntegrator(0.25 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    totals, kinetic = total_energy_trace(context, integrator, 400, every=4)
    drift = np.abs(totals - totals[0]).max()
    print(f"drift {drift:.4f} kJ/mol, kinetic swing {np.ptp(kinetic):.2f} kJ/mol")
    assert np.ptp(kinetic) > 2.0
    assert drift < 0.5


def water_box(n_side=3, spacing=3.1):
    """Waters on a cubic grid (Angstrom), a Topology with bonds for amber14's TIP3P
    templates, and the box; water 0 is the ML one."""
    water = molecule("H2O")
    topology = app.Topology()
    chain = topology.addChain()
    positions = []
    element = app.Element.getBySymbol
    for k in range(n_side**3):
        shift = spacing * np.array(np.unravel_index(k, (n_side,) * 3), float)
        residue = topology.addResidue("HOH", chain)
        o = topology.addAtom("O", element("O"), residue)
        h1 = topology.addAtom("H1", element("H"), residue)
        h2 = topology.addAtom("H2", element("H"), residue)
        topology.addBond(o, h1)
        topology.addBond(o, h2)
        positions += list(water.positions[[0, 1, 2]] + shift)
    box = n_side * spacing
    topology.setPeriodicBoxVectors(np.eye(3) * box / ANGSTROM_PER_NM * unit.nanometer)
    return topology, np.array(positions), box


def tip3p_internal(positions_list):
    """Energies (eV) and forces (eV/Angstrom) of flexible amber14 TIP3P's bond and angle terms
    for single waters (O, H, H) at the given positions (Angstrom)."""
    topology, _, _ = water_box(n_side=1)
    topology.setPeriodicBoxVectors(None)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    system = forcefield.createSystem(topology, constraints=None, rigidWater=False)
    for k in reversed(range(system.getNumForces())):
        if not isinstance(system.getForce(k), (openmm.HarmonicBondForce,
                                               openmm.HarmonicAngleForce)):
            system.removeForce(k)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for pos in positions_list:
        context.setPositions(pos / ANGSTROM_PER_NM * unit.nanometer)
        e, f = openmm_energy_forces(context)
        energies.append(e / KJ_PER_MOL_PER_EV)
        forces.append(f / (KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM))
    return np.array(energies), np.array(forces)


@pytest.fixture(scope="module")
def ml_water_model():
    """A tiny model fitted in about a second to the TIP3P bond and angle terms it replaces, so
    the ML water stays bound (an untrained model lets an H leave and fall onto another
    water's O: TIP3P's H has no Lennard-Jones core)."""
    from torch_geometric.data import Batch

    from molsym.data.graph import atoms_to_graph
    from molsym.models import predict_batch

    rng = np.random.default_rng(0)
    ref = molecule("H2O")[[0, 1, 2]]
    frames = [ref.positions + rng.normal(0, 0.03 + 0.03 * (k % 3), (3, 3)) for k in range(48)]
    energies, forces = tip3p_internal(frames)
    graphs = []
    for pos, e, f in zip(frames, energies, forces, strict=True):
        atoms = Atoms("OH2", positions=pos)
        atoms.info["energy"], atoms.arrays["forces"] = e, f
        graphs.append(atoms_to_graph(atoms, 4.0, torch.float64))
    batch = Batch.from_data_list(graphs)
    model = make_model(elements=[1, 8]).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(300):
        out = predict_batch(model, batch, compute_forces=True)
        loss = ((out["energy"] - batch.energy) ** 2).mean() + (
            (out["forces"] - batch.forces) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rmse = ((out["forces"] - batch.forces) ** 2).mean().sqrt().item()
    assert rmse < 0.2 * batch.forces.std().item()
    return model.eval()


def test_ml_water_in_tip3p_water_runs_and_conserves_energy(ml_water_model):
    """27 flexible TIP3P waters (amber14, PME), water 0 in ML (its bond and angle terms removed
    by openmm-ml's mechanical embedding, its Coulomb and LJ with the others kept): the ML force
    group equals MolsymCalculator on that water in the box, and 200 steps of 0.25 fs NVE keep
    the total energy within 1 kJ/mol while the kinetic energy swings by hundreds (LJ switched
    and Ewald tolerance 1e-5: the MM part alone drifts by 0.22 kJ/mol here, 3.7 kJ/mol
    with an unswitched cutoff and OpenMM's default tolerance)."""
    model = ml_water_model
    topology, pos, box = water_box()
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    mm_system = forcefield.createSystem(topology, nonbondedMethod=app.PME,
                                        nonbondedCutoff=0.4 * unit.nanometer,
                                        switchDistance=0.35 * unit.nanometer,
                                        ewaldErrorTolerance=1e-5,
                                        constraints=None, rigidWater=False)
    ml_atoms = [0, 1, 2]
    system = MLPotential("molsym", model=model).createMixedSystem(
        topology, mm_system, ml_atoms, forceGroup=31)
    integrator = openmm.VerletIntegrator(0.25 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pos / ANGSTROM_PER_NM * unit.nanometer)
    ml_energy, ml_forces = openmm_energy_forces(context, groups={31})
    ml_water = Atoms("OH2", positions=pos[ml_atoms], cell=np.eye(3) * box, pbc=True)
    ref_energy, ref_forces = calculator_energy_forces(model, ml_water)
    assert ml_energy == pytest.approx(ref_energy, rel=1e-5)
    np.testing.assert_allclose(ml_forces[ml_atoms], ref_forces, rtol=1e-5,
                               atol=1e-5 * np.abs(ref_forces).max())
    assert np.all(ml_forces[3:] == 0)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2)
    totals, kinetic = total_energy_trace(context, integrator, 200, every=4)
    drift = np.abs(totals - totals[0]).max()
    print(f"drift {drift:.4f} kJ/mol, kinetic swing {np.ptp(kinetic):.2f} kJ/mol")
    assert np.ptp(kinetic) > 100.0
    assert drift < 1.0
