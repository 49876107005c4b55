"""The Chemprop peer gets U0 relative to per-element references fitted on the training
molecules, and the evaluation adds them back: what Chemprop predicts is compared to absolute
U0, like molsym's predictions."""

import json

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from scripts.benchmarks import smiles_properties

REFS = {1: -13.6, 6: -1029.0, 8: -2043.0}  # eV per atom of each element


def _molecule(symbols: str, smiles: str, extra: float) -> Atoms:
    atoms = Atoms(symbols, positions=np.arange(3 * len(Atoms(symbols))).reshape(-1, 3))
    atoms.info.update({"smiles": smiles, "name": smiles, "homo": -7.0, "lumo": 0.5,
                       "gap": 7.5, "dipole_moment": 0.2})
    energy = sum(REFS[int(z)] for z in atoms.numbers) + extra
    atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


def test_u0_is_referenced_for_chemprop_and_restored_for_the_comparison(tmp_path):
    data, out = tmp_path / "data", tmp_path / "bench"
    data.mkdir()
    rng = np.random.default_rng(0)
    shapes = [("CH4", "C"), ("C2H6", "CC"), ("H2O", "O"), ("CH4O", "CO"), ("C2H6O", "CCO"),
              ("CO2", "O=C=O"), ("C2H4", "C=C")]
    trainval = [_molecule(s, smi, float(rng.normal(0, 0.01))) for s, smi in shapes]
    test = [_molecule("C3H8", "CCC", 0.02), _molecule("C2H4O", "CC=O", -0.03)]
    ase.io.write(data / "qm9_trainval.extxyz", trainval)
    ase.io.write(data / "qm9_test.extxyz", test)
    (data / "trainval_split.json").write_text(json.dumps({"train": [0, 1, 2, 3, 4, 5],
                                                         "val": [6], "test": []}))
    assert smiles_properties.prepare(data, out) == {"train": 6, "val": 1, "test": 2}
    train = pd.read_csv(out / "train.csv")
    assert np.abs(train["u0_eV"]).max() < 0.05  # absolute U0 is -40 to -4,000 eV
    labels = pd.read_csv(out / "test_labels.csv")
    assert labels["u0_eV"].iloc[0] < -1000  # the comparison keeps absolute U0
    chemprop_csv = pd.read_csv(out / "test.csv")
    chemprop_csv.to_csv(out / "chemprop_test_predictions.csv", index=False)  # a perfect peer
    restored = smiles_properties._chemprop_predictions(out, test)
    np.testing.assert_allclose(restored["u0_eV"], labels["u0_eV"], atol=1e-6)
    np.testing.assert_allclose(restored["homo_eV"], labels["homo_eV"])
