"""A model whose training compositions do not determine every per-element reference energy
(one molecule's frames) flags predictions on other compositions; a determined one does not."""

import logging

import numpy as np
from ase.build import molecule

from molsym.data.statistics import energy_reference
from molsym.deploy import save_model
from molsym.inference.calculator import MolsymCalculator
from molsym.inference.extrapolation import COMPOSITION_WARNING
from molsym.inference.predictor import Predictor, predict
from tests.inference.conftest import ELEMENTS, small_model

# formaldehyde frames only (CH2O: H2 C1 N0 O1), as training writes it
ONE_MOLECULE = energy_reference(np.array([[2, 1, 0, 1]] * 5), ELEMENTS)
VARIED = energy_reference(np.array([[2, 1, 0, 1], [2, 0, 0, 1], [4, 1, 0, 0], [3, 0, 1, 0]]),
                          ELEMENTS)


def write(tmp_path, name, reference):
    return save_model(small_model(), tmp_path / name, metadata={"energy_reference": reference})


def warnings_of(model):
    table = predict(model, [molecule("H2O"), molecule("H2CO")])
    return list(table["warning"])


def test_undetermined_reference_flags_other_compositions_only(tmp_path):
    assert not ONE_MOLECULE["determined"] and VARIED["determined"]
    water, formaldehyde = warnings_of(write(tmp_path, "one.pt", ONE_MOLECULE))
    assert COMPOSITION_WARNING in water
    assert COMPOSITION_WARNING not in formaldehyde
    assert warnings_of(str(write(tmp_path, "varied.pt", VARIED))) == ["", ""]
    assert warnings_of(write(tmp_path, "old.pt", None)) == ["", ""]  # file without the record
    assert warnings_of(small_model()) == ["", ""]  # a model object: no metadata, no flag


def test_no_flag_for_a_model_without_energy(tmp_path):
    from molsym.models import InvariantModel

    model = InvariantModel(cutoff=4.0, elements=ELEMENTS, outputs=["homo"], num_channels=8,
                           num_layers=1, num_radial=4, radial_hidden=8, readout_hidden=8)
    path = save_model(model.double(), tmp_path / "homo.pt",
                      metadata={"energy_reference": ONE_MOLECULE})
    assert Predictor(path).energy_reference is None
    assert warnings_of(path) == ["", ""]


def test_calculator_logs_once_per_composition(tmp_path, caplog):
    calc = MolsymCalculator(write(tmp_path, "one.pt", ONE_MOLECULE))
    with caplog.at_level(logging.WARNING, logger="molsym.inference.calculator"):
        for atoms in [molecule("H2O"), molecule("H2O"), molecule("H2CO")]:
            atoms.rattle(0.01, seed=len(caplog.records))
            atoms.calc = calc
            atoms.get_potential_energy()
    flagged = [r for r in caplog.records if "energy reference" in r.getMessage()]
    assert len(flagged) == 1 and "H2O" in flagged[0].getMessage()
