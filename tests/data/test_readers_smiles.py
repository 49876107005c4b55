import numpy as np
import pytest
from ase import units
from rdkit import Chem
from rdkit.Chem import AllChem

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file, read_smiles
from molsym.errors import InputError


def _cip_from_coordinates(smiles, atoms):
    """CIP labels (atoms and double bonds) assigned from the reader's 3D coordinates."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == list(atoms.numbers)
    for b in mol.GetBonds():
        b.SetStereo(Chem.BondStereo.STEREONONE)
    for a in mol.GetAtoms():
        a.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    conf = Chem.Conformer(len(atoms))
    for i, p in enumerate(atoms.positions):
        conf.SetAtomPosition(i, p.tolist())
    mol.AddConformer(conf, assignId=True)
    Chem.AssignStereochemistryFrom3D(mol)
    return _cip(mol)


def _cip(mol):
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    atoms = {a.GetIdx(): a.GetProp("_CIPCode") for a in mol.GetAtoms() if a.HasProp("_CIPCode")}
    bonds = {b.GetIdx(): str(b.GetStereo()) for b in mol.GetBonds()
             if b.GetStereo() != Chem.BondStereo.STEREONONE}
    return atoms, bonds


def test_smiles_gives_hydrogens_ids_and_relaxed_geometry():
    (atoms,) = read_smiles("CCO", num_workers=1)
    assert atoms.get_chemical_formula() == "C2H6O"
    assert atoms.info["id"] == "cli:0" and atoms.info["smiles"] == "CCO"
    assert atoms.info["record"] == 0 and atoms.info["total_charge"] == 0.0
    d = atoms.get_all_distances()
    assert 1.45 < d[0, 1] < 1.56  # MMFF C-C single bond
    heavy = atoms.numbers > 1
    assert (d[~heavy][:, heavy].min(axis=1) < 1.15).all()  # every H bonded
    graph = atoms_to_graph(atoms, cutoff=5.0)
    assert graph.num_nodes == 9 and float(graph.total_charge) == 0.0


def test_mmff_optimised_to_a_minimum():
    (atoms,) = read_smiles("CC(=O)Nc1ccccc1", num_workers=1)
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccccc1"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    for i, p in enumerate(atoms.positions):
        mol.GetConformer().SetAtomPosition(i, p.tolist())
    ff = AllChem.MMFFGetMoleculeForceField(mol, AllChem.MMFFGetMoleculeProperties(mol))
    grad = np.asarray(ff.CalcGrad()).reshape(-1, 3)
    assert np.abs(grad).max() < 0.05  # kcal/mol/Angstrom: converged minimum


def test_formal_charges_kept():
    got = read_smiles(["C[NH3+]", "CC(=O)[O-]", "[NH3+]CC(=O)[O-]"], num_workers=1)
    assert [a.info["total_charge"] for a in got] == [1.0, -1.0, 0.0]


@pytest.mark.parametrize("smiles", ["C[C@H](N)O", "C[C@@H](N)O", "F/C=C/F", r"F/C=C\F",
                                    "C[C@H]1CC[C@@H](C)CC1N"])
def test_stereo_kept(smiles):
    (atoms,) = read_smiles(smiles, num_workers=1)
    want = _cip(Chem.AddHs(Chem.MolFromSmiles(smiles)))
    assert want[0] or want[1]
    got = _cip_from_coordinates(smiles, atoms)
    assert {k: got[0].get(k) for k in want[0]} == want[0]  # centres the SMILES specifies
    assert {k: got[1].get(k) for k in want[1]} == want[1]


def test_parallel_matches_serial_in_order_and_is_deterministic():
    smiles = ["CCO", "c1ccccc1", "CC(C)C(=O)O", "C1CCNCC1", "OCC(O)CO", "CC#N", "C"]
    serial = read_smiles(smiles, num_workers=1, seed=7)
    parallel = read_smiles(smiles, num_workers=2, seed=7)
    assert [a.info["smiles"] for a in parallel] == smiles
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)


def test_conformers():
    confs = read_smiles("CCCCO", num_conformers=3, num_workers=1, names=["butanol"])
    assert [a.info["id"] for a in confs] == ["cli:0:0", "cli:0:1", "cli:0:2"]
    assert all(a.info["name"] == "butanol" for a in confs)
    assert np.abs(confs[0].positions - confs[1].positions).max() > 0.1


def test_uff_fallback_when_mmff_lacks_parameters():
    smiles = "C[Se]C"
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert not AllChem.MMFFHasAllMoleculeParams(mol)
    (atoms,) = read_smiles(smiles, num_workers=1)
    AllChem.EmbedMolecule(mol, randomSeed=1)
    for i, p in enumerate(atoms.positions):
        mol.GetConformer().SetAtomPosition(i, p.tolist())
    grad = np.asarray(AllChem.UFFGetMoleculeForceField(mol).CalcGrad())
    assert np.abs(grad).max() < 0.05  # a UFF minimum


def test_smi_file_lines_names_comments(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("# header comment\nCCO ethanol\n\nc1ccccc1  benzene ring\nC\n")
    got = read_file(path, num_workers=1)
    assert [a.info["record"] for a in got] == [2, 4, 5]
    assert [a.info.get("name") for a in got] == ["ethanol", "benzene ring", None]
    assert got[0].info["id"] == f"{path}:2"


def test_csv_labels_and_units(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("name,SMILES,homo,flag\nwater,O,-0.25,x\nmethane,C,-0.3,y\n")
    got = read_file(path, label_units={"homo": "Hartree"}, num_workers=1)
    assert [a.info["record"] for a in got] == [2, 3]
    assert [a.info["name"] for a in got] == ["water", "methane"]
    np.testing.assert_allclose([a.info["homo"] for a in got],
                               [-0.25 * units.Hartree, -0.3 * units.Hartree])
    assert "flag" not in got[0].info


def test_bad_smiles_in_file_raise_and_skip(tmp_path):
    path = tmp_path / "bad.smi"
    path.write_text("CCO\nC1CC\nC1#CC1 strained\nCCN\n")
    with pytest.raises(InputError, match=r"bad\.smi, line 2: invalid SMILES"):
        read_file(path, num_workers=1)
    errors = []
    got = read_file(path, on_error="skip", errors=errors, num_workers=2)
    assert [a.info["smiles"] for a in got] == ["CCO", "CCN"]
    assert [(e.record, e.source) for e in errors] == [(2, str(path)), (3, str(path))]
    assert "could not embed" in str(errors[1])


def test_bad_smiles_cli_and_csv(tmp_path):
    with pytest.raises(InputError, match="cli, record 1: invalid SMILES"):
        read_smiles(["C", "not_a_smiles"], num_workers=1)
    path = tmp_path / "t.csv"
    path.write_text("smiles,y\nC,1\n,2\nCC,3\n")
    errors = []
    got = read_file(path, on_error="skip", errors=errors, num_workers=1)
    assert [a.info["y"] for a in got] == [1.0, 3.0]
    assert errors[0].record == 3
    (tmp_path / "nosmiles.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="no 'smiles' column"):
        read_file(tmp_path / "nosmiles.csv")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.smi").write_text("")
    (tmp_path / "comments.smi").write_text("# nothing\n\n")
    for name in ["empty.smi", "comments.smi", "missing.smi"]:
        with pytest.raises(InputError, match=name):
            read_file(tmp_path / name)
