"""The loop's steps on their own: selection with its diversity rule, explosion checks,
settings, the start set, and exploration with a real (tiny) committee."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from molsym.errors import ConfigError, InputError
from molsym.learning.explosion import ExplosionCheck
from molsym.learning.select import distance_signature, select
from molsym.learning.settings import LoopSettings
from molsym.learning.start import start_structures


def _frame(shift: float, spread: float, before: bool = False) -> Atoms:
    atoms = molecule("H2O")
    atoms.positions[1] *= 1.0 + shift
    atoms.info.update({"spread": spread, "trajectory": 0, "step": 0})
    if before:
        atoms.info["before_explosion"] = 1
    return atoms


def test_select_takes_largest_spread_first_and_skips_near_duplicates():
    frames = [_frame(0.0, 0.5), _frame(0.001, 0.6), _frame(0.2, 0.3), _frame(0.4, 0.05)]
    picked = select(frames, threshold=0.1, count=10, min_distance=0.05)
    # 0.6 first; 0.5 is the same event (0.001 apart); 0.05 is under the threshold
    assert [f.info["spread"] for f in picked] == [0.6, 0.3]
    assert len(select(frames, 0.1, 1, 0.05)) == 1
    assert select(frames, 0.1, 0, 0.05) == []
    # near an already labelled structure: skipped too
    assert [f.info["spread"] for f in select(frames, 0.1, 10, 0.05, [_frame(0.2, 0.0)])] == [0.6]


def test_select_puts_the_frame_before_an_explosion_first_whatever_its_spread():
    frames = [_frame(0.0, 0.9), _frame(0.3, 0.01, before=True)]
    picked = select(frames, threshold=0.1, count=2, min_distance=0.05)
    assert [f.info["spread"] for f in picked] == [0.01, 0.9]


def test_distance_signature_ignores_rotation_and_translation():
    atoms = molecule("CH3CH2OH")
    moved = atoms.copy()
    moved.rotate(37, "z")
    moved.translate([1.0, -2.0, 0.5])
    np.testing.assert_allclose(distance_signature(atoms), distance_signature(moved), atol=1e-12)


def test_explosion_check_sees_broken_bonds_collapsed_atoms_and_large_spread():
    start = molecule("CH3CH2OH")
    check = ExplosionCheck(start, explode_at=1.0, bond_stretch=1.6)
    assert check.reason(start, 0.1) is None
    assert "force spread" in check.reason(start, 2.0)
    assert "force spread" in check.reason(start, float("nan"))
    broken = start.copy()
    h = next(i for i, s in enumerate(broken.get_chemical_symbols()) if s == "H")
    broken.positions[h] += 3.0 * (broken.positions[h] - broken.positions.mean(0))
    assert "stretched" in check.reason(broken, 0.1)
    collapsed = start.copy()
    collapsed.positions[1] = collapsed.positions[0] + [0.2, 0.0, 0.0]
    assert check.reason(collapsed, 0.1) is not None


@pytest.mark.parametrize("key, value", [("max_labels", 0), ("max_labels", 2),
                                        ("max_hours", 0.0), ("num_trajectories", 0),
                                        ("threshold", -0.1), ("explode_factor", 1.0)])
def test_settings_refuse_impossible_budgets_and_knobs(key, value):
    with pytest.raises(ConfigError, match=f"learn.{key}"):
        LoopSettings(**{key: value})


def test_start_set_has_conformers_and_rattled_copies_with_charge_info():
    out = start_structures(["CCO", "[NH4+]"], num_conformers=2, rattled_copies=2,
                           rattle_stdev=0.05, seed=0)
    assert len(out) == 2 * 2 * 3
    assert len({a.info["id"] for a in out}) == len(out)
    base, rattled = out[0], out[1]
    shift = np.linalg.norm(rattled.positions - base.positions, axis=1)
    assert 0.0 < shift.mean() < 0.3  # Gaussian 0.05 Angstrom per component
    assert {a.info["total_charge"] for a in out if a.info["smiles"] == "[NH4+]"} == {1.0}
    with pytest.raises(InputError, match="invalid SMILES"):
        start_structures(["CCO", "C1CC"], 1, 0, 0.05, 0)


def test_smiles_come_from_a_string_a_list_or_a_smi_file(tmp_path):
    from molsym.learning.start import smiles_list

    path = tmp_path / "molecules.smi"
    path.write_text("CCO ethanol\nCC(=O)O acetic\nCCO again\n")
    assert smiles_list(str(path)) == ["CCO", "CC(=O)O"]  # each molecule once
    assert smiles_list("CCO") == ["CCO"]
    assert smiles_list(["CCO", "C"]) == ["CCO", "C"]
    with pytest.raises(InputError, match="not found"):
        smiles_list(str(tmp_path / "missing.smi"))


def test_each_warning_shows_once_even_when_only_its_numbers_change():
    import logging

    from molsym.learning.progress import OnceFilter

    once = OnceFilter()

    def record(level, msg):
        return logging.LogRecord("molsym.x", level, __file__, 1, msg, None, None)

    assert once.filter(record(logging.WARNING, "5 compositions span rank 1"))
    assert not once.filter(record(logging.WARNING, "9 compositions span rank 1"))
    assert once.filter(record(logging.WARNING, "another caveat"))
    assert once.filter(record(logging.INFO, "5 compositions span rank 1"))


def _committee():
    import torch

    from molsym.inference.calculator import MolsymCalculator
    from molsym.models import EnsembleModel
    from molsym.models.equivariant import EquivariantModel

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(EquivariantModel(elements=[1, 6, 8], num_channels=4, l_max=1,
                                        num_radial=4, radial_hidden=8, readout_hidden=4,
                                        energy_scale=0.1))
    return MolsymCalculator(EnsembleModel.from_models(members), dtype="float64")


def test_exploration_samples_every_trajectory_and_restarts_after_explosions():
    from molsym.learning.explore import explore

    calc, start = _committee(), molecule("CH3CH2OH")
    start.info["smiles"] = "CCO"
    calm = LoopSettings(num_trajectories=2, md_steps=20, sample_every=5, threshold=1e3,
                        temperature=300.0)
    found = explore(calc, [start], calm, seed=0)
    assert [len(s) for s in found.spreads] == [4, 4] and not found.explosions
    assert len(found.frames) == 8 and all(f.info["spread"] > 0 for f in found.frames)
    assert {f.info["trajectory"] for f in found.frames} == {0, 1}
    assert all(f.info["smiles"] == "CCO" for f in found.frames)
    # explode_at below every spread: each sample is an explosion and a restart
    wild = LoopSettings(num_trajectories=1, md_steps=20, sample_every=5, threshold=1e-9,
                        explode_factor=2.0)
    found = explore(calc, [start], wild, seed=0)
    assert len(found.explosions) == 4 and found.frames == []
    assert all("force spread" in e["reason"] for e in found.explosions)
    summary = found.summary(wild.threshold)
    assert summary["sampled_frames"] == 4 and len(summary["explosions"]) == 4
