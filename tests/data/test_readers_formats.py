
"""SDF/MOL, ASE database, rMD17 npz and read_file dispatch."""

import os
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import molecule
from ase.calculators.emt import EMT
from rdkit import Chem
from rdkit.Chem import AllChem

from molsym.data.readers import detect_format, read_file
from molsym.errors import InputError

KCAL = units.kcal / units.mol
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data
RMD17 = str(SHARED_DATA / "rmd17" / "rmd17_ethanol_test_01.npz")


def _embedded(smiles, seed=3):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    props = AllChem.MMFFGetMoleculeProperties(mol)
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    ff.Minimize()
    mol.SetProp("_Name", smiles)
    mol.SetDoubleProp("mmff_energy", ff.CalcEnergy())
    mol.SetProp("comment", "text, not a label")
    return mol


def test_sdf_keeps_3d_coordinates_hydrogens_and_numeric_props(tmp_path):
    mols = [_embedded(s) for s in ["CCO", "c1ccccc1O", "C[NH3+]"]]
    path = tmp_path / "mols.sdf"
    with Chem.SDWriter(str(path)) as w:
        for m in mols:
            w.write(m)
    got = read_file(path, energy_key="mmff_energy", energy_unit="kcal/mol")
    assert [a.info["id"] for a in got] == [f"{path}:{k}" for k in range(3)]
    for a, m in zip(got, mols, strict=True):
        np.testing.assert_allclose(a.positions, m.GetConformer().GetPositions(), atol=1e-4)
        assert list(a.numbers) == [x.GetAtomicNum() for x in m.GetAtoms()]
        assert a.info["energy"] == pytest.approx(m.GetDoubleProp("mmff_energy") * KCAL, 1e-6)
        assert a.info["name"] == m.GetProp("_Name") and "comment" not in a.info
        assert Chem.CanonSmiles(a.info["smiles"]) == Chem.CanonSmiles(m.GetProp("_Name"))
    assert [a.info["total_charge"] for a in got] == [0.0, 0.0, 1.0]


def test_mol_file_and_2d_rejected(tmp_path):
    mol = _embedded("CC(=O)O")
    Chem.MolToMolFile(mol, str(tmp_path / "acid.mol"))
    (a,) = read_file(tmp_path / "acid.mol")
    np.testing.assert_allclose(a.positions, mol.GetConformer().GetPositions(), atol=1e-4)
    flat = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.Compute2DCoords(flat)
    Chem.MolToMolFile(flat, str(tmp_path / "flat.mol"))
    with pytest.raises(InputError, match=r"flat\.mol, molecule 0: .*2D"):
        read_file(tmp_path / "flat.mol")


def test_sdf_bad_molecule_skipped(tmp_path):
    good = Chem.MolToMolBlock(_embedded("CCO"))
    bad = "\n".join(line.replace(" C ", " Q ", 1) for line in good.splitlines())
    close = _embedded("CC")
    conf = close.GetConformer()
    conf.SetAtomPosition(1, conf.GetAtomPosition(0) + Chem.rdGeometry.Point3D(0.01, 0, 0))
    path = tmp_path / "mixed.sdf"
    path.write_text(good + "\n$$$$\n" + bad + "\n$$$$\n" + Chem.MolToMolBlock(close)
                    + "\n$$$$\n" + good + "\n$$$$\n")
    with pytest.raises(InputError, match=r"mixed\.sdf, molecule 1"):
        read_file(path)
    errors = []
    got = read_file(path, on_error="skip", errors=errors)
    assert [a.info["record"] for a in got] == [0, 3]
    assert [e.record for e in errors] == [1, 2] and "apart" in str(errors[1])


@pytest.mark.parametrize("damage", ["lost M  END", "cut block", "empty record"])
def test_sdf_broken_record_never_swallows_its_neighbours(tmp_path, damage):
    # RDKit's supplier, left to find the ends itself, reads a record without "M  END" into
    # the next one: both were lost, the second without an error (found by the reader fuzz)
    blocks = [Chem.MolToMolBlock(_embedded(s, seed=k)) for k, s in
              enumerate(["CCO", "c1ccccc1", "CC#N"])]
    lines = blocks[1].splitlines()
    if damage == "lost M  END":
        blocks[1] = "\n".join(line for line in lines if line.strip() != "M  END")
    elif damage == "cut block":
        blocks[1] = "\n".join(lines[: len(lines) // 2])
    else:
        blocks[1] = ""
    path = tmp_path / "three.sdf"
    path.write_text("".join(b.rstrip("\n") + "\n$$$$\n" for b in blocks))
    errors = []
    got = read_file(path, on_error="skip", errors=errors)
    assert [a.info["record"] for a in got] == [0, 2]
    assert [e.record for e in errors] == [1] and "three.sdf, molecule 1" in str(errors[0])
    assert Chem.MolToSmiles(Chem.MolFromSmiles(got[1].info["smiles"])) == "CC#N"


def test_ase_db_roundtrip_with_calculator_and_key_value_pairs(tmp_path):
    import ase.db

    path = tmp_path / "mols.db"
    refs = []
    with ase.db.connect(str(path)) as db:
        for k, name in enumerate(["H2O", "CH3CH2OH", "NH3"]):
            a = molecule(name)
            a.rattle(0.05, seed=k)
            a.calc = EMT()
            a.get_forces()
            db.write(a, name=name, homo=-5.0 - k, note="x")
            refs.append(a)
    got = read_file(path, label_units={"homo": "Hartree"})
    assert [a.info["id"] for a in got] == [f"{path}:{k}" for k in range(3)]
    for k, (a, ref) in enumerate(zip(got, refs, strict=True)):
        np.testing.assert_allclose(a.positions, ref.positions)
        assert a.info["energy"] == pytest.approx(ref.get_potential_energy())
        np.testing.assert_allclose(a.arrays["forces"], ref.get_forces())
        assert a.info["homo"] == pytest.approx((-5.0 - k) * units.Hartree)
        assert a.info["name"] == ["H2O", "CH3CH2OH", "NH3"][k] and "note" not in a.info
    assert len(read_file(path, selection="homo<-5.5")) == 2


def test_ase_db_bad_row_and_not_a_database(tmp_path):
    import ase.db
    from ase import Atoms

    path = tmp_path / "bad.db"
    with ase.db.connect(str(path)) as db:
        db.write(molecule("H2O"))
        db.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]]))
    errors = []
    assert len(read_file(path, on_error="skip", errors=errors)) == 1
    assert errors[0].record == 1 and "bad.db" in str(errors[0])
    (tmp_path / "junk.db").write_text("this is not sqlite")
    with pytest.raises(InputError, match=r"junk\.db"):
        read_file(tmp_path / "junk.db")


def _write_npz(path, frames, energies_ev, forces_ev, **extra):
    np.savez(path, nuclear_charges=frames[0].numbers,
             coords=np.stack([a.positions for a in frames]),
             energies=np.asarray(energies_ev) / KCAL, forces=np.stack(forces_ev) / KCAL, **extra)


def test_rmd17_npz_units(tmp_path):
    frames = []
    for k in range(3):
        a = molecule("CH3CH2OH")
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        frames.append(a)
    e = [a.get_potential_energy() for a in frames]
    f = [a.get_forces() for a in frames]
    _write_npz(tmp_path / "eth.npz", frames, e, f)
    got = read_file(tmp_path / "eth.npz")
    assert [a.info["record"] for a in got] == [0, 1, 2]
    np.testing.assert_allclose([a.info["energy"] for a in got], e, rtol=1e-12)
    np.testing.assert_allclose(np.stack([a.arrays["forces"] for a in got]), np.stack(f),
                               rtol=1e-12, atol=1e-14)
    coords = np.stack([a.positions for a in frames])
    coords[1, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", nuclear_charges=frames[0].numbers, coords=coords,
             energies=np.zeros(3), forces=np.zeros_like(coords))
    with pytest.raises(InputError, match=r"nan\.npz, frame 1: non-finite"):
        read_file(tmp_path / "nan.npz")
    errors = []
    assert len(read_file(tmp_path / "nan.npz", on_error="skip", errors=errors)) == 2
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="no rMD17"):
        read_file(tmp_path / "other.npz")


@pytest.mark.skipif(not os.path.exists(RMD17), reason="reference data not present")
def test_rmd17_reference_file():
    got = read_file(RMD17)
    raw = np.load(RMD17)
    assert len(got) == 1000 and got[0].get_chemical_formula() == "C2H6O"
    assert got[5].info["energy"] == pytest.approx(raw["energies"][5] * KCAL, rel=1e-12)


def test_read_file_dispatch_errors(tmp_path):
    assert detect_format("a/b.EXTXYZ") == "extxyz" and detect_format("x.mol") == "mol"
    with pytest.raises(InputError, match="unknown file extension"):
        read_file(tmp_path / "x.pdb")
    for ext in ["smi", "csv", "xyz", "sdf", "mol", "db", "npz"]:
        (tmp_path / f"empty.{ext}").write_text("")
        with pytest.raises(InputError, match=rf"empty\.{ext}: file is empty"):
            read_file(tmp_path / f"empty.{ext}")
        with pytest.raises(InputError, match=rf"missing\.{ext}: no such file"):
            read_file(tmp_path / f"missing.{ext}")
    with pytest.raises(ValueError, match="on_error"):
        read_file(tmp_path / "empty.xyz", on_error="ignore")
