"""The least-squares refit of the per-element energy shifts after training."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.models import EquivariantModel, predict_batch
from molsym.training.energy_shift import refit_energy_shift

ELEMENTS = [1, 6, 8]


def small_model() -> EquivariantModel:
    model = EquivariantModel(cutoff=4.0, elements=ELEMENTS, num_channels=8, num_layers=2,
                             l_max=1, radial_hidden=16, atomic_energies=[-13.0, -1030.0, -2040.0],
                             energy_scale=0.5)
    return model.double()


def graphs_of(names, copies=3, seed=0):
    rng = np.random.default_rng(seed)
    graphs = []
    for name in names:
        for _ in range(copies):
            atoms = molecule(name)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            graphs.append(atoms_to_graph(atoms, 4.0, dtype=torch.float64))
    return graphs


def composition(graph) -> np.ndarray:
    z = graph[keys.ATOMIC_NUMBERS].numpy()
    return np.array([(z == e).sum() for e in ELEMENTS], dtype=float)


def energies_and_forces(model, graphs):
    out = predict_batch(model, Batch.from_data_list(graphs))
    return out[keys.ENERGY].detach().clone(), out[keys.FORCES].detach().clone()


def label(graphs, energies) -> None:
    for g, e in zip(graphs, energies, strict=True):
        g[keys.ENERGY] = torch.tensor([float(e)], dtype=torch.float64)


def test_refit_recovers_per_element_offsets_and_leaves_forces_alone():
    model = small_model()
    graphs = graphs_of(["CH4", "H2O", "C2H6", "CH3OH", "CH3CH2OH", "HCOOH"])
    energy, forces = energies_and_forces(model, graphs)
    offsets = np.array([0.013, -0.21, 0.35])  # eV per H, C, O
    label(graphs, energy.numpy() + np.stack([composition(g) for g in graphs]) @ offsets)
    shift_before = model.atomic_energy_shift.detach().clone()

    info = refit_energy_shift(model, graphs, batch_size=5)

    np.testing.assert_allclose((model.atomic_energy_shift.detach() - shift_before).numpy(),
                               offsets, atol=1e-9)
    energy_after, forces_after = energies_and_forces(model, graphs)
    labels = torch.cat([g[keys.ENERGY] for g in graphs])
    torch.testing.assert_close(energy_after, labels, rtol=0, atol=1e-9)
    torch.testing.assert_close(forces_after, forces, rtol=0, atol=1e-12)
    assert info["num_graphs"] == len(graphs)
    assert info["mae_before_meV"] > 10 and info["mae_after_meV"] < 1e-6


def test_refit_of_one_composition_fixes_the_total_with_the_smallest_shifts():
    """One molecule fixes only the total: the offset goes to all elements in proportion to
    their counts (minimum norm), and the errors' mean becomes zero."""
    model = small_model()
    graphs = graphs_of(["CH3CH2OH"], copies=6)
    energy, _ = energies_and_forces(model, graphs)
    noise = np.random.default_rng(1).normal(0.0, 0.01, len(graphs))
    label(graphs, energy.numpy() - 0.05 + noise)  # the model is 50 meV too high, plus noise
    shift_before = model.atomic_energy_shift.detach().clone()

    info = refit_energy_shift(model, graphs)

    delta = (model.atomic_energy_shift.detach() - shift_before).numpy()
    counts = composition(graphs[0])
    np.testing.assert_allclose(delta / np.linalg.norm(delta), -counts / np.linalg.norm(counts),
                               atol=1e-9)
    assert delta @ counts == pytest.approx(-0.05 + noise.mean(), abs=1e-9)
    assert info["mean_error_before_meV"] == pytest.approx(1e3 * (0.05 - noise.mean()), rel=1e-6)
    energy_after, _ = energies_and_forces(model, graphs)
    labels = torch.cat([g[keys.ENERGY] for g in graphs])
    assert abs(float((energy_after - labels).mean())) < 1e-9
    assert info["mae_after_meV"] < info["mae_before_meV"]


def test_refit_without_energy_labels_changes_nothing():
    model = small_model()
    graphs = graphs_of(["CH4"], copies=2)
    shift_before = model.atomic_energy_shift.detach().clone()
    assert refit_energy_shift(model, graphs) is None
    assert torch.equal(model.atomic_energy_shift.detach(), shift_before)


@pytest.mark.parametrize("refit", [True, False])
def test_a_training_run_deploys_and_tests_the_refit_model(tmp_path, refit):
    """`train` refits the best EMA weights on the training split before testing: the deployed
    model's energy errors on the training frames average zero, and metrics.json is its test."""
    import json

    from molsym.data.readers import read_file
    from molsym.deploy import load_model
    from molsym.training.evaluate import evaluate
    from molsym.training.run import train
    from tests.cli.cli_helpers import tiny_train_config, write_emt_frames

    data = write_emt_frames(tmp_path / "frames.extxyz", n=40)
    cfg = tiny_train_config(data, tmp_path / "run", f"refit_energy_shift={str(refit).lower()}")
    result = train(cfg, tmp_path / "run")

    model = load_model(tmp_path / "run" / "model.pt")
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    frames = read_file(data)
    train_graphs = [atoms_to_graph(frames[i], model.cutoff) for i in splits["train"]]
    _, pairs = evaluate(model, train_graphs)
    ref, pred = pairs[keys.ENERGY]
    mean_error = float(np.mean(pred.astype(float) - ref.astype(float)))
    test_graphs = [atoms_to_graph(frames[i], model.cutoff) for i in splits["test"]]
    test_metrics, _ = evaluate(model, test_graphs)
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["energy"]["mae"] == pytest.approx(test_metrics["energy"]["mae"], rel=1e-4)
    info = result["energy_shift_refit"]
    if refit:
        assert (tmp_path / "run" / "checkpoints" / "refit.ckpt").is_file()
        assert info["num_graphs"] == len(splits["train"])
        assert info["mae_after_meV"] <= info["mae_before_meV"]
        assert abs(mean_error) < 1e-3 * max(1.0, info["mae_after_meV"])  # meV (evaluate's unit)
    else:
        assert info is None
        assert abs(mean_error) > 1.0  # one epoch leaves an offset: the refit had work to do


def test_epoch_fit_over_batches_equals_the_refit_of_the_whole_set():
    """The normal equations summed batch by batch give refit_energy_shift's correction, for
    mixed compositions and for one molecule (minimum norm)."""
    from molsym.training.energy_shift import EpochShiftFit

    for names, copies in ((["CH4", "H2O", "C2H6", "CH3OH", "CH3CH2OH", "HCOOH"], 3),
                          (["CH3CH2OH"], 7)):
        model = small_model()
        graphs = graphs_of(names, copies)
        energy, _ = energies_and_forces(model, graphs)
        noise = np.random.default_rng(2).normal(0.0, 0.02, len(graphs))
        label(graphs, energy.numpy() + np.stack([composition(g) for g in graphs])
              @ np.array([0.013, -0.21, 0.35]) + noise)
        fit = EpochShiftFit(len(ELEMENTS))
        for start in range(0, len(graphs), 4):
            batch = Batch.from_data_list(graphs[start:start + 4])
            fit.add(predict_batch(model, batch, compute_forces=False)[keys.ENERGY],
                    batch[keys.ENERGY], model.species_index(batch[keys.ATOMIC_NUMBERS]),
                    batch.batch)
        delta = fit.solve()
        before = model.atomic_energy_shift.detach().clone()
        refit_energy_shift(model, graphs)
        np.testing.assert_allclose(delta.numpy(),
                                   (model.atomic_energy_shift.detach() - before).numpy(),
                                   atol=1e-8)
        assert fit.solve() is None  # cleared: a new epoch starts empty


@pytest.mark.parametrize("mode", ["refit", "fixed", "trained"])
def test_energy_shift_modes_of_a_training_run(tmp_path, mode):
    """With the learning rate 0 only the epoch refit can move the shifts: ``refit`` leaves
    the deployed model's training-set energy errors averaging zero (no refit after
    training), ``fixed`` and ``trained`` keep the initial shifts; a real rate trains them
    only in ``trained``."""
    import json

    from molsym.data.readers import read_file
    from molsym.deploy import load_model
    from molsym.training.evaluate import evaluate
    from molsym.training.run import train
    from tests.cli.cli_helpers import tiny_train_config, write_emt_frames

    data = write_emt_frames(tmp_path / "frames.extxyz", n=40)
    run = tmp_path / "run"
    train(tiny_train_config(data, run, f"module.energy_shift={mode}", "optimizer.lr=0",
                            "trainer.max_epochs=2", "refit_energy_shift=false"), run)
    model = load_model(run / "model.pt")
    splits = json.loads((run / "splits.json").read_text())
    frames = read_file(data)
    _, pairs = evaluate(model, [atoms_to_graph(frames[i], model.cutoff)
                                for i in splits["train"]])
    ref, pred = pairs[keys.ENERGY]
    mean_error = float(np.mean(pred.astype(float) - ref.astype(float)))  # meV
    initial = torch.tensor(json.loads((run / "statistics.json").read_text())
                           ["atomic_energies"], dtype=model.atomic_energy_shift.dtype)
    moved = float((model.atomic_energy_shift.detach() - initial).abs().max())
    if mode == "refit":
        assert abs(mean_error) < 1e-2 and moved > 1e-3
    else:
        assert abs(mean_error) > 1.0 and moved < 1e-6
    if mode != "refit":
        run2 = tmp_path / "run2"
        train(tiny_train_config(data, run2, f"module.energy_shift={mode}", "optimizer.lr=0.01",
                                "refit_energy_shift=false"), run2)
        moved = float((load_model(run2 / "model.pt").atomic_energy_shift.detach()
                       - initial).abs().max())
        assert (moved > 1e-4) == (mode == "trained")


def test_refit_with_a_non_finite_label_changes_nothing():
    model = small_model()
    graphs = graphs_of(["CH4", "H2O"], copies=2)
    energy, _ = energies_and_forces(model, graphs)
    label(graphs, energy.numpy() + 0.1)
    graphs[1][keys.ENERGY] = torch.tensor([float("nan")], dtype=torch.float64)
    shift_before = model.atomic_energy_shift.detach().clone()
    assert refit_energy_shift(model, graphs) is None
    assert torch.equal(model.atomic_energy_shift.detach(), shift_before)


def test_energy_reference_rank_and_coverage():
    import numpy as np

    from molsym.data.statistics import composition_covered, energy_reference

    aspirin = np.array([[8, 9, 4]] * 5)  # H, C, O counts: one composition
    ref = energy_reference(aspirin, [1, 6, 8])
    assert not ref["determined"] and ref["undetermined_elements"] == [1, 6, 8]
    assert ref["compositions"] == [[8, 9, 4]]
    assert composition_covered([1] * 16 + [6] * 18 + [8] * 8, ref)  # two aspirins
    assert not composition_covered({1: 2, 8: 1}, ref)  # water
    # methane + ethane fix H and C; O never varies apart from them
    mixed = np.array([[4, 1, 0], [6, 2, 0], [6, 2, 1]])
    ref = energy_reference(mixed, [1, 6, 8])
    assert ref["determined"] and len(ref["compositions"]) == 3
    assert composition_covered({1: 2, 8: 1}, ref)
    # water and water + C: C is fixed, H and O only as 2 H + O
    partial = energy_reference(np.array([[2, 0, 1], [2, 1, 1], [2, 0, 1]]), [1, 6, 8])
    assert not partial["determined"] and partial["undetermined_elements"] == [1, 8]
    assert composition_covered({6: 1}, partial) and composition_covered({1: 4, 8: 2}, partial)
    assert not composition_covered({8: 1}, partial)
    assert energy_reference(aspirin, [1, 6, 8], isolated=True)["determined"]
    assert composition_covered({1: 2, 8: 1}, None)  # files without the record


def test_isolated_atom_energies_stay_the_shifts_and_fix_the_dissociation_limit(tmp_path):
    """With ``data.isolated_atom_energies_path`` the shifts are pinned (not trained, not
    refitted) and, with ``exact_isolated_atoms``, a molecule pulled apart has the sum of its
    isolated atoms' energies: here a C-O pair at three cutoffs apart."""
    import ase.io
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from molsym.deploy import load_model
    from molsym.training.run import train
    from tests.cli.cli_helpers import tiny_train_config, write_emt_frames

    isolated = {}
    lone = []
    for symbol in ("H", "C", "O"):
        atom = Atoms(symbol, positions=[[0.0, 0.0, 0.0]])
        atom.calc = EMT()
        isolated[symbol] = atom.get_potential_energy()
        atom.calc = SinglePointCalculator(atom, energy=isolated[symbol])
        lone.append(atom)
    iso_path = tmp_path / "iso.extxyz"
    ase.io.write(iso_path, lone, format="extxyz")
    data = write_emt_frames(tmp_path / "frames.extxyz", n=40)
    cfg = tiny_train_config(data, tmp_path / "run", f"data.isolated_atom_energies_path={iso_path}",
                            "trainer.max_epochs=3", "optimizer.lr=0.02")
    result = train(cfg, tmp_path / "run")

    assert result["energy_shift_refit"] is None
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.exact_isolated_atoms
    expected = [isolated[s] for s in ("H", "C", "O")]
    np.testing.assert_allclose(model.atomic_energy_shift.detach().numpy(), expected, atol=1e-6)
    far = 3 * model.cutoff
    pair = Atoms("CO", positions=[[0.0, 0.0, 0.0], [far, 0.0, 0.0]])
    energy = predict_batch(model, Batch.from_data_list([atoms_to_graph(pair, model.cutoff)]))
    assert float(energy[keys.ENERGY]) == pytest.approx(isolated["C"] + isolated["O"], abs=1e-5)
