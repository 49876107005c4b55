"""The bundled QM9 model: installed with the package, small, sane on real QM9 molecules."""

import io
from pathlib import Path

import pandas as pd
import pytest
from ase.io import read

from molsym.cli.predict import main
from molsym.inference.predictor import predict
from molsym.pretrained import PRETRAINED, available, pretrained_path
from molsym.units import DEBYE

FIXTURE = Path(__file__).parent / "fixtures" / "qm9_test5.extxyz"
COLUMNS = {"energy_eV", "homo_eV", "lumo_eV", "gap_eV", "dipole_D"}

pytestmark = pytest.mark.skipif("qm9" not in available(), reason="qm9.pt not bundled")


def test_bundled_file_is_small_and_loads():
    path = pretrained_path("qm9")
    assert path.stat().st_size <= 20 * 2**20
    assert PRETRAINED["qm9"]["file"] == path.name


def test_cli_by_name(capsys):
    assert main(["--model", "qm9", "CCO", "c1ccccc1", "--jobs", "1"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert COLUMNS <= set(df.columns)
    assert (df["gap_eV"] > 0).all() and (df["lumo_eV"] > df["homo_eV"]).all()


def test_close_to_dft_labels_on_held_out_qm9_molecules():
    """Five molecules of the held-out QM9 test split (DFT geometries and labels, internal
    units) predicted within loose bounds: catches unit, sign and loading mistakes."""
    frames = read(FIXTURE, index=":")
    df = predict("qm9", frames)
    assert (df["error"] == "").all()
    for frame, row in zip(frames, df.itertuples(), strict=True):
        assert abs(row.energy_eV - frame.get_potential_energy()) < 1.0  # U0 ~ -1e4 eV
        assert abs(row.homo_eV - frame.info["homo"]) < 1.0
        assert abs(row.gap_eV - frame.info["gap"]) < 1.5
        assert abs(row.dipole_D - frame.info["dipole_moment"] / DEBYE) < 1.5


def test_bundled_model_gives_symmetric_molecules_no_dipole():
    """The shipped QM9 model's dipole magnitude is the norm of its dipole vector: CH4, CO2,
    N2 and benzene get zero by symmetry (the scalar head gave 1.9, 11.8, 12.5 D)."""
    df = predict("qm9-dft", ["C", "O=C=O", "N#N", "c1ccccc1"])
    assert (df["error"] == "").all()
    assert (df["dipole_D"] < 0.05).all(), df["dipole_D"].tolist()
    assert predict("qm9-dft", ["CO"])["dipole_D"].iloc[0] > 0.5  # methanol is polar


def test_shipped_split_is_the_full_qm9_split():
    import json
    from importlib.resources import files

    split = json.loads((files("molsym.pretrained") / "qm9_split.json").read_text())
    train, val, test = (set(split[k]) for k in ("train", "val", "test"))
    assert len(train) >= 110_000 and len(val) == 10_000 and len(test) >= 10_000
    assert not (train & val or train & test or val & test)
    assert min(train | val | test) >= 1  # QM9 molecule numbers (qm9pack 'Index'), 1-based
