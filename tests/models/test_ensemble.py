"""Committees: mean and spread of the members, deploy round trip, `molsym ensemble`."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from molsym.cli.ensemble import main as ensemble_main
from molsym.data.graph import atoms_to_graph
from molsym.deploy.model_file import load_model, read_model_file, save_model
from molsym.models import EnsembleModel, EquivariantModel, InvariantModel, predict_batch

OUTPUTS = ["energy", "forces", "dipole", "homo"]


def _member(seed, cls=EquivariantModel, **kw):
    torch.manual_seed(seed)
    kw = {"cutoff": 4.0, "elements": [1, 6, 8], "outputs": OUTPUTS, "num_channels": 8, **kw}
    if cls is EquivariantModel:
        kw.setdefault("l_max", 1)
    return cls(**kw).double().eval()


def _run(model, atoms):
    return predict_batch(model, atoms_to_graph(atoms, 4.0, dtype=torch.float64))


def test_mean_and_spread_are_those_of_the_members():
    members = [_member(s) for s in range(3)] + [_member(9, InvariantModel)]
    committee = EnsembleModel.from_models(members).eval()
    atoms = molecule("CH3CH2OH")
    single = [_run(m, atoms) for m in members]
    out = _run(committee, atoms)
    for key in OUTPUTS:
        stacked = torch.stack([o[key] for o in single])
        assert torch.allclose(out[key], stacked.mean(0), atol=1e-10), key
    energies = torch.stack([o["energy"] for o in single])
    assert torch.allclose(out["energy_std"], energies.std(0, unbiased=False))
    forces = torch.stack([o["forces"] for o in single])
    rms = (forces - forces.mean(0)).pow(2).sum(-1).mean(0).sqrt()
    assert out["forces_std"].shape == (len(atoms),)
    assert torch.allclose(out["forces_std"], rms)
    assert float(out["energy_std"]) > 0 and float(out["homo_std"]) > 0


def test_spread_is_invariant_and_zero_for_identical_members():
    committee = EnsembleModel.from_models([_member(0), _member(1)]).eval()
    atoms = molecule("CH3CH2OH")
    moved = atoms.copy()
    moved.rotate(50, (1, 2, 3), center="COM")
    moved.translate([4, -1, 2])
    a, b = _run(committee, atoms), _run(committee, moved)
    for key in ("energy_std", "forces_std", "dipole_std", "homo_std"):
        assert torch.allclose(a[key], b[key], atol=1e-9), key
    same = EnsembleModel.from_models([_member(0), _member(0)]).eval()
    out = _run(same, atoms)
    assert float(out["forces_std"].abs().max()) < 1e-12 and float(out["energy_std"]) < 1e-12


def test_committee_deploy_file_is_plain_data_and_round_trips(tmp_path):
    committee = EnsembleModel.from_models([_member(0), _member(1), _member(2)]).eval()
    path = save_model(committee, tmp_path / "committee.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["model_class"] == "ensemble" and len(raw["config"]["members"]) == 3
    loaded = load_model(path)
    atoms = molecule("H2O")
    a, b = _run(committee, atoms), _run(loaded, atoms)
    for key in a:
        np.testing.assert_allclose(a[key].detach(), b[key].detach(), atol=1e-12)


def test_a_member_class_outside_the_allowlist_is_refused(tmp_path):
    committee = EnsembleModel.from_models([_member(0)])
    path = save_model(committee, tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)
    raw["config"]["members"][0]["model_class"] = "os.system"
    torch.save(raw, path)
    from molsym.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model class"):
        load_model(path)


def test_cli_combines_files_and_refuses_incompatible_ones(tmp_path, capsys):
    paths = [save_model(_member(s), tmp_path / f"m{s}.pt") for s in range(2)]
    assert ensemble_main([str(p) for p in paths] + ["-o", str(tmp_path / "c.pt")]) == 0
    assert len(read_model_file(tmp_path / "c.pt")["config"]["members"]) == 2
    other = save_model(_member(3, cutoff=5.0), tmp_path / "cut5.pt")
    assert ensemble_main([str(paths[0]), str(other), "-o", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cutoff" in err[0]
    assert not (tmp_path / "bad.pt").exists()
    elements = save_model(_member(4, elements=[1, 6, 7, 8]), tmp_path / "el.pt")
    assert ensemble_main([str(paths[0]), str(elements), "-o", str(tmp_path / "bad.pt")]) == 2
    assert "elements" in capsys.readouterr().err
    assert ensemble_main([str(paths[0]), "-o", str(paths[0])]) == 2


def _loop_and_stacked(committee, batch, **kw):
    """Outputs with the members one by one and in one batched pass."""
    committee.stack_max_edge_features = 0
    loop = predict_batch(committee, batch, **kw)
    committee.stack_max_edge_features = 10**9
    return loop, predict_batch(committee, batch, **kw)


@pytest.mark.parametrize("config", [dict(l_max=2), dict(l_max=1), dict(l_max=0),
                                    dict(l_max=2, full_paths=True, species_linear=True,
                                         radial_layers=2, trainable_basis=True,
                                         envelope_exponent=5),
                                    dict(l_max=2, radial_layers=2, more_scalars=True),
                                    dict(l_max=1, species_products=True, species_linear=True),
                                    dict(l_max=2, species_products=True, more_scalars=True,
                                         rank3_density=True)])
def test_one_batched_pass_equals_the_members_one_by_one(tmp_path, config):
    members = [_member(s, outputs=OUTPUTS + ["dipole_moment"], property_mean={"homo": s},
                       property_std={"homo": 1.0 + s}, atomic_energies=[-s, -2.0, -3.0],
                       **config) for s in range(4)]
    with torch.no_grad():  # no path trivially zero
        for m in members:
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p) * (p.abs().mean() + 0.1))
    path = save_model(EnsembleModel.from_models(members).eval(), tmp_path / "committee.pt")
    committee = load_model(path)  # weights_only=True, members from the allowlist
    assert [indices for indices, _ in committee._groups] == [[0, 1, 2, 3]]
    from torch_geometric.data import Batch

    frames = [molecule("CH3CH2OH"), molecule("CH3COOH")]
    batch = Batch.from_data_list([atoms_to_graph(a, 4.0, dtype=torch.float64) for a in frames])
    loop, stacked = _loop_and_stacked(committee, batch)
    members_out = [predict_batch(m, batch) for m in committee.members]
    assert torch.allclose(loop["forces"], torch.stack([o["forces"] for o in members_out]).mean(0))
    assert set(stacked) == set(loop) >= {"energy_std", "forces_std", "dipole_std", "homo_std",
                                         "dipole_moment_std", "charges"}
    for key in loop:
        scale = float(loop[key].abs().max())
        assert float((stacked[key] - loop[key]).abs().max()) <= 1e-10 * scale + 1e-14, key
    assert float(stacked["forces_std"].min()) > 0


def test_batched_pass_serves_periodic_graphs_and_unpaired_edges():
    committee = EnsembleModel.from_models([_member(s) for s in range(3)]).eval()
    atoms = molecule("H2O")
    atoms.set_cell([3.0, 3.2, 3.4])
    atoms.pbc = True
    graph = atoms_to_graph(atoms, 4.0, dtype=torch.float64)
    loop, stacked = _loop_and_stacked(committee, graph)
    for key in loop:
        torch.testing.assert_close(stacked[key], loop[key], rtol=1e-10, atol=1e-12)
    args = (graph.z, graph.pos, graph.edge_index, torch.zeros_like(graph.z), 1)
    kw = dict(cell=graph.cell, cell_shifts=graph.cell_shifts, compute_stress=True)
    with_stress = committee(*args, **kw)  # stress: the members one by one
    assert with_stress["stress"].shape == (1, 3, 3)


def test_members_with_trained_bessel_frequencies_keep_their_own_in_the_batched_pass():
    """Members whose Bessel frequencies were trained (and so differ) run in one batched pass,
    each with its own basis: the same outputs as the members one by one."""
    members = [_member(s, trainable_basis=True) for s in range(3)]
    with torch.no_grad():
        for k, m in enumerate(members):
            m.basis.freqs.mul_(1.0 + 0.1 * k)
    committee = EnsembleModel.from_models(members).eval()
    assert [indices for indices, _ in committee._groups] == [[0, 1, 2]]
    graph = atoms_to_graph(molecule("CH3CH2OH"), 4.0, dtype=torch.float64)
    loop, stacked = _loop_and_stacked(committee, graph)
    for key in loop:
        torch.testing.assert_close(stacked[key], loop[key], rtol=1e-10, atol=1e-12)
    forces = torch.stack([predict_batch(m, graph)["forces"] for m in members])
    torch.testing.assert_close(stacked["forces"], forces.mean(0), rtol=1e-10, atol=1e-12)
