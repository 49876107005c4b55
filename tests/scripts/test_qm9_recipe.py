"""The QM9 recipe's SMILES embedding: labels follow the molecule, failures are reported,
the split follows the embedded frames, and a rerun reuses the finished chunks."""

import json

import ase.io
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from scripts import qm9_recipe


def _frame(smiles, energy, homo):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])  # geometry is not used
    atoms.info.update({"smiles": smiles, "name": smiles, "homo": homo, "lumo": 0.0,
                       "gap": 1.0, "dipole_moment": 0.1})
    atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


def test_embed_keeps_labels_reports_failures_and_maps_the_split(tmp_path):
    frames = [_frame("CCO", -1.0, -7.0), _frame("C1=CC=C", -2.0, -6.0),  # bad valence/ring
              _frame("c1ccccc1", -3.0, -6.5), _frame("N#N", -4.0, -11.0)]
    ase.io.write(tmp_path / "qm9_tiny.extxyz", frames)
    (tmp_path / "tiny_split.json").write_text(json.dumps({"train": [0, 1, 2], "val": [3]}))
    report = qm9_recipe.embed(tmp_path, "tiny", jobs=1, chunk=2)
    assert report["embedded"] == 3 and list(report["failed"]) == ["1"]
    assert report["dft_position"] == [0, 2, 3]
    out = ase.io.read(tmp_path / "qm9_tiny_smiles.extxyz", index=":")
    assert [a.get_chemical_formula() for a in out] == ["C2H6O", "C6H6", "N2"]
    assert [a.get_potential_energy() for a in out] == [-1.0, -3.0, -4.0]
    assert [a.info["homo"] for a in out] == [-7.0, -6.5, -11.0]
    split = json.loads((tmp_path / "tiny_smiles_split.json").read_text())
    assert split["train"] == [0, 1] and split["val"] == [2]
    chunk = tmp_path / "smiles_chunks" / "tiny_0000000.extxyz"
    stamp = chunk.stat().st_mtime_ns
    assert qm9_recipe.embed(tmp_path, "tiny", jobs=1, chunk=2)["embedded"] == 3
    assert chunk.stat().st_mtime_ns == stamp  # finished chunks are not embedded again
