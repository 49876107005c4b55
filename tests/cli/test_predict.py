import io
import os

import ase.io
import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule
from rdkit import Chem
from rdkit.Chem import AllChem

from molsym.atomic import atomic_output
from molsym.cli.predict import main
from molsym.data.readers import read_file
from molsym.inference.calculator import MolsymCalculator
from tests.inference.conftest import small_model

COLUMNS = ["id", "input", "index", "name", "smiles", "formula", "n_atoms", "energy_eV",
           "dipole_D", "homo_eV", "warning", "error"]


def write_sdf(path, smiles_list):
    with Chem.SDWriter(str(path)) as writer:
        for smi in smiles_list:
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            AllChem.EmbedMolecule(mol, randomSeed=1)
            writer.write(mol)


@pytest.fixture
def inputs(tmp_path):
    smi = tmp_path / "mols.smi"
    smi.write_text("CCO ethanol\nnot_a_smiles(\n\nc1ccccc1 benzene\n")
    csv = tmp_path / "mols.csv"
    csv.write_text("name,smiles\nethane,CC\nbroken,C1CC\n")
    xyz = tmp_path / "frames.extxyz"
    ase.io.write(xyz, [molecule("H2O"), molecule("SiH4"), molecule("CH4")])
    sdf = tmp_path / "mols.sdf"
    write_sdf(sdf, ["CN", "OC=O"])
    return smi, csv, xyz, sdf


def test_every_input_kind_in_order_with_error_rows(inputs, model_file, tmp_path):
    smi, csv, xyz, sdf = inputs
    out = tmp_path / "out.csv"
    missing = tmp_path / "missing.sdf"
    argv = ["--model", str(model_file), "CO", str(smi), str(csv), str(xyz), str(sdf),
            str(missing), "C[Cl]", "-o", str(out), "--jobs", "1"]
    assert main(argv) == 1  # some molecules failed, the table is still written
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == COLUMNS
    expected = [("cli", 0), (str(smi), 1), (str(smi), 2), (str(smi), 4), (str(csv), 2),
                (str(csv), 3), (str(xyz), 0), (str(xyz), 1), (str(xyz), 2), (str(sdf), 0),
                (str(sdf), 1), (str(missing), ""), ("cli", 1)]
    got = [(r.input, r.index if r.index == "" else int(r.index)) for r in df.itertuples()]
    assert got == expected
    failed = {i for i, e in enumerate(df["error"]) if e}
    assert failed == {2, 5, 7, 11, 12}
    assert "Si" in df.loc[7, "error"] and "Cl" in df.loc[12, "error"]
    assert df.loc[11, "error"] == "file not found"
    assert df.loc[0, "smiles"] == "CO" and df.loc[3, "smiles"] == "c1ccccc1"
    assert list(df.loc[[6, 8, 9, 10], "formula"]) == ["H2O", "CH4", "CH5N", "CH2O2"]
    ok = df["error"] == ""
    assert np.isfinite(df.loc[ok, "energy_eV"].astype(float)).all()


def test_all_good_exits_0_and_writes_stdout(model_file, capsys):
    assert main(["--model", str(model_file), "CCO", "CO", "--jobs", "1"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert list(df.columns) == COLUMNS and list(df["smiles"]) == ["CCO", "CO"]
    assert (df["error"] == "").all()


@pytest.mark.parametrize("argv", [["CCO"], ["--model"], ["--model", "m.pt", "C",
                                  "--batch-atoms", "0"], ["--model", "m.pt", "C", "--device",
                                                          "tpu"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_unknown_model_exits_2(capsys):
    assert main(["--model", "no-such-model", "CCO"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_forces_file_round_trips_and_matches_the_calculator(model_file, tmp_path):
    out, forces = tmp_path / "t.csv", tmp_path / "f.extxyz"
    argv = ["--model", str(model_file), "CCO", "bad(", "OCC=O", "-o", str(out), "--forces",
            str(forces), "--jobs", "1", "--dtype", "float64"]
    assert main(argv) == 1
    table = pd.read_csv(out, keep_default_na=False)
    frames = read_file(forces)
    assert [f.info["smiles"] for f in frames] == ["CCO", "OCC=O"]
    calc = MolsymCalculator(small_model(), dtype="float64")
    for frame, energy in zip(frames, table.loc[table["error"] == "", "energy_eV"], strict=True):
        atoms = frame.copy()
        atoms.calc = calc
        np.testing.assert_allclose(frame.arrays["forces"], atoms.get_forces(), atol=1e-8)
        # abs: float64 rounding of batched against single sums (a random model's energies
        # are near zero: the lone-atom energies are subtracted)
        assert frame.info["energy"] == pytest.approx(float(energy), rel=1e-8, abs=1e-9)
        assert atoms.get_potential_energy() == pytest.approx(float(energy), rel=1e-8, abs=1e-9)


def test_atomic_output_leaves_old_file_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old content\n")
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as fh:
        fh.write("id,input\npartial row")
        raise KeyboardInterrupt  # interrupted mid-write
    assert target.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["table.csv"]
    with atomic_output(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["table.csv"]


def test_cli_interrupted_while_writing_leaves_no_partial_file(model_file, tmp_path,
                                                              monkeypatch):
    out = tmp_path / "out.csv"
    real_to_csv = pd.DataFrame.to_csv

    def half_then_fail(self, buf=None, **kwargs):
        text = real_to_csv(self, None, **kwargs)
        buf.write(text[: len(text) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        main(["--model", str(model_file), "CCO", "-o", str(out), "--jobs", "1"])
    assert os.listdir(tmp_path) == []


def test_parallel_embedding_keeps_order(model_file, tmp_path, capsys):
    smiles = ["C", "CC", "CCC", "CCCC", "CO", "CCO", "bad(", "CN", "CCN", "OCCO"]
    assert main(["--model", str(model_file), *smiles, "--jobs", "2"]) == 1
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert list(df["smiles"]) == smiles
    assert list(df["index"]) == list(range(len(smiles)))
    assert [bool(e) for e in df["error"]] == [s == "bad(" for s in smiles]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_without_a_device_exits_2(model_file, capsys):
    assert main(["--model", str(model_file), "CCO", "--device", "cuda"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_forces_from_a_model_without_forces_exits_2(tmp_path, capsys):
    from molsym.deploy import save_model
    from molsym.models import InvariantModel

    path = tmp_path / "energy_only.pt"
    save_model(InvariantModel(cutoff=4.0, elements=[1, 6, 8], outputs=["energy", "gap"],
                              num_channels=8, num_layers=1), path)
    argv = ["--model", str(path), "CCO", "--forces", str(tmp_path / "f.extxyz")]
    assert main(argv) == 2
    assert "no forces" in capsys.readouterr().err
    assert not (tmp_path / "f.extxyz").exists()
