import math

import numpy as np
import pytest
import torch
from ase.build import molecule
from hypothesis import given
from hypothesis import strategies as st
from torch_geometric.data import Batch

from molsym import units
from molsym.data.graph import atoms_to_graph
from molsym.errors import ConfigError
from molsym.inference.predictor import (
    BASE_COLUMNS,
    Predictor,
    atom_batches,
    predict,
    property_column,
)
from molsym.models import predict_batch
from molsym.pretrained import PRETRAINED, resolve_model_path

from .conftest import small_model

COLUMNS = BASE_COLUMNS + ["energy_eV", "dipole_D", "homo_eV", "warning", "error"]


def test_rows_columns_and_errors_in_input_order():
    water = molecule("H2O")
    mols = ["CCO", "xyz(", "C[Si](C)C", water, "[NH4+]", 42]
    df = predict(small_model(), mols)
    assert list(df.columns) == COLUMNS
    assert list(df["index"]) == list(range(len(mols)))
    assert list(df["smiles"]) == ["CCO", "xyz(", "C[Si](C)C", "", "[NH4+]", ""]
    ok = df["error"] == ""
    assert list(ok) == [True, False, False, True, True, False]
    assert "invalid SMILES" in df.loc[1, "error"]
    assert "Si" in df.loc[2, "error"] and "not covered" in df.loc[2, "error"]
    assert "int" in df.loc[5, "error"]
    assert df.loc[ok, ["energy_eV", "dipole_D", "homo_eV"]].notna().all().all()
    assert df.loc[~ok, ["energy_eV", "dipole_D", "homo_eV"]].isna().all().all()
    assert list(df.loc[ok, "formula"]) == ["C2H6O", "H2O", "H4N"]
    assert list(df.loc[ok, "n_atoms"]) == [9, 3, 5]


def test_values_equal_a_direct_model_call():
    model = small_model()
    mols = [molecule("CH3CH2OH"), molecule("CH4"), molecule("HCOOH")]
    df = predict(model, mols)
    batch = Batch.from_data_list([atoms_to_graph(m, model.cutoff, torch.float64) for m in mols])
    out = predict_batch(model, batch, compute_forces=False)
    np.testing.assert_allclose(df["energy_eV"], out["energy"].detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(df["homo_eV"], out["homo"].detach().numpy(), rtol=1e-10)
    dipole_d = out["dipole"].detach().norm(dim=-1).numpy() / units.DEBYE
    np.testing.assert_allclose(df["dipole_D"], dipole_d, rtol=1e-10)


def test_batching_does_not_change_results():
    mols = ["C", "CC", "CCC", "c1ccccc1O", "N#N", "OCCO", "CC(=O)N"]
    one = predict(small_model(), mols, batch_atoms=1)
    many = predict(small_model(), mols, batch_atoms=10_000)
    cols = ["energy_eV", "dipole_D", "homo_eV"]
    np.testing.assert_allclose(one[cols].to_numpy(), many[cols].to_numpy(), rtol=1e-10,
                               atol=1e-12)


def test_float32_close_to_float64_and_forces_are_returned():
    mols = [molecule("CH3CH2OH"), molecule("CH3CONH2")]
    p64 = Predictor(small_model(), dtype="float64")
    p32 = Predictor(small_model(), dtype="float32")
    e64 = p64.run([_entry(m) for m in mols], forces=True)
    e32 = p32.run([_entry(m) for m in mols], forces=True)
    for a, b in zip(e64, e32, strict=True):
        assert a.forces.shape == (len(a.atoms), 3)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-4)
        # abs_tol: a random model's energies are near zero (lone-atom energies subtracted)
        assert math.isclose(a.values["energy_eV"], b.values["energy_eV"], rel_tol=1e-5,
                            abs_tol=1e-6)


def _entry(atoms):
    from molsym.inference.predictor import Entry

    return Entry.from_atoms(atoms)


@given(st.lists(st.integers(1, 50), max_size=40), st.integers(1, 120))
def test_atom_batches_cover_everything_in_order_within_limit(sizes, limit):
    groups = list(atom_batches(sizes, limit))
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    for g in groups:
        assert len(g) == 1 or sum(sizes[i] for i in g) <= limit


def test_model_by_file_and_bad_names(model_file):
    df = predict(model_file, ["CO"], dtype="float64")
    ref = predict(small_model(), ["CO"])
    assert df.loc[0, "energy_eV"] == pytest.approx(ref.loc[0, "energy_eV"], rel=1e-6)
    with pytest.raises(ConfigError, match="neither a model file nor a pretrained"):
        predict("no-such-model", ["C"])
    assert "qm9" in PRETRAINED
    with pytest.raises(ConfigError):
        resolve_model_path("no-such-model")


def test_dipole_moment_column_name():
    assert property_column("dipole_moment", ["energy", "dipole_moment"]) == "dipole_D"
    assert property_column("dipole_moment", ["dipole", "dipole_moment"]) == "dipole_moment_D"
    assert property_column("energy") == "energy_eV"
    assert property_column("something") == "something"


def test_batch_atoms_must_be_positive():
    with pytest.raises(ConfigError):
        Predictor(small_model(), batch_atoms=0)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    mols = ["CCO", "c1ccccc1O", molecule("CH3CONH2")]
    cpu = predict(small_model(), mols)
    gpu = predict(small_model(), mols, device="cuda")
    cols = ["energy_eV", "dipole_D", "homo_eV"]
    np.testing.assert_allclose(gpu[cols].to_numpy(), cpu[cols].to_numpy(), rtol=1e-8,
                               atol=1e-10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_device_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA"):
        Predictor(small_model(), device="cuda")


def test_dipole_magnitude_is_never_negative():
    from molsym.models import InvariantModel

    model = InvariantModel(cutoff=4.0, elements=[1, 6, 8], outputs=["energy", "dipole_moment"],
                           num_channels=8, num_layers=1, property_mean={"dipole_moment": -5.0},
                           property_std={"dipole_moment": 0.01},
                           dipole_moment_from_vector=False).double()  # the scalar head
    df = predict(model, [molecule("CH3CH2OH"), molecule("H2O")])
    assert list(df.columns)[-3] == "dipole_D"
    assert (df["dipole_D"] == 0.0).all()  # the raw head gives about -5 e*Angstrom
