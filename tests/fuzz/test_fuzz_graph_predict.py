"""Fuzz ``atoms_to_graph`` with random cells and structures and ``predict`` with mixed good
and bad inputs.

Invariants: a graph (finite, invariant under permutation and translation) or an
:class:`InputError` naming the record; ``predict`` gives one row per input, in order, good
rows equal to predicting them alone, bad rows an error string.
"""

from __future__ import annotations

import ase
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from molsym.data.graph import atoms_to_graph
from molsym.errors import InputError
from molsym.inference.predictor import predict
from tests.fuzz.strategies import MOLECULES, check_molsym_error, examples, molecule
from tests.fuzz.strategies import smiles as smiles_st
from tests.inference.conftest import small_model

CUTOFF = 4.0
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(-6.0, 6.0)


@pytest.fixture(scope="module")
def model():
    return small_model()


@st.composite
def cells(draw):
    kind = draw(st.sampled_from(["lattice", "lattice", "random", "degenerate", "none"]))
    if kind == "lattice":
        from ase.geometry import cellpar_to_cell

        lengths = draw(st.lists(st.floats(2.0, 12.0), min_size=3, max_size=3))
        angles = draw(st.lists(st.floats(60.0, 120.0), min_size=3, max_size=3))
        try:
            return cellpar_to_cell(lengths + angles)
        except ValueError:
            return np.eye(3) * 5.0
    if kind == "random":
        return np.array(draw(st.lists(floats, min_size=9, max_size=9))).reshape(3, 3)
    if kind == "degenerate":
        cell = np.eye(3) * 5.0
        cell[draw(st.integers(0, 2))] = 0.0
        return cell
    return np.zeros((3, 3))


@st.composite
def structures(draw):
    n = draw(st.integers(0, 6))
    numbers = draw(st.lists(st.sampled_from([1, 6, 7, 8, 0, 119, 26]), min_size=n, max_size=n))
    coord = st.one_of(finite, finite, finite, floats)
    pos = draw(st.lists(st.lists(coord, min_size=3, max_size=3), min_size=n, max_size=n))
    cell = draw(cells())
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    atoms = ase.Atoms(numbers=[max(z, 1) for z in numbers],
                      positions=np.array(pos, dtype=float).reshape(n, 3))
    atoms.numbers = np.array(numbers, dtype=int)  # also 0 and 119, which ase.Atoms refuses
    atoms.cell = cell if np.isfinite(cell).all() else np.zeros((3, 3))
    atoms.pbc = pbc
    if not np.isfinite(cell).all():  # a NaN cell can only be set behind ase's back
        atoms.cell.array[:] = cell
    atoms.info.update(source="fuzz", record=7)
    return atoms


def _sorted_distances(graph) -> np.ndarray:
    src, dst = graph.edge_index
    vec = graph.pos[dst] - graph.pos[src] + graph.cell_shifts @ graph.cell[0]
    return np.sort(vec.norm(dim=-1).numpy())


def _graph_or_error(atoms):
    try:
        return atoms_to_graph(atoms, CUTOFF, dtype=torch.float64)
    except Exception as err:  # noqa: BLE001 - the point: which exception it is
        check_molsym_error(err)
        assert isinstance(err, InputError) and err.record == 7, str(err)
        return None


@examples(60)
@given(structures(), st.data())
def test_atoms_to_graph_random(atoms, data):
    graph = _graph_or_error(atoms)
    if graph is None:
        return
    assert torch.isfinite(graph.pos).all() and torch.isfinite(graph.cell).all()
    assert graph.edge_index.shape[0] == 2
    if graph.edge_index.numel():
        assert int(graph.edge_index.max()) < len(atoms)
    # permutation and translation: the same multiset of edge lengths
    perm = np.array(data.draw(st.permutations(range(len(atoms)))), dtype=int)
    shift = np.array(data.draw(st.lists(st.floats(-3, 3), min_size=3, max_size=3)))
    moved = atoms[perm] if len(atoms) else atoms.copy()
    moved.positions = moved.positions + shift
    other = _graph_or_error(moved)
    assert other is not None, "a translated/permuted copy of a valid structure was refused"
    np.testing.assert_allclose(_sorted_distances(other), _sorted_distances(graph), atol=1e-8)


ENERGY = "energy_eV"


@examples(15)
@given(st.sampled_from(MOLECULES), st.data())
def test_predict_permutation_translation_invariant(model, name, data):
    atoms = molecule(name)
    perm = np.array(data.draw(st.permutations(range(len(atoms)))), dtype=int)
    shift = np.array(data.draw(st.lists(st.floats(-50, 50), min_size=3, max_size=3)))
    moved = atoms[perm]
    moved.positions += shift
    df = predict(model, [atoms, moved])
    assert (df["error"] == "").all(), df["error"].tolist()
    assert np.isfinite(df[ENERGY]).all()
    np.testing.assert_allclose(df[ENERGY][0], df[ENERGY][1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(df["homo_eV"][0], df["homo_eV"][1], rtol=1e-9, atol=1e-9)


def _bad_atoms(kind: str) -> ase.Atoms:
    if kind == "nan":
        a = molecule("H2O")
        a.positions[1, 0] = np.nan
    elif kind == "overlap":
        a = molecule("CH4")
        a.positions[1] = a.positions[0]
    elif kind == "element":
        a = ase.Atoms("FeH", positions=[[0, 0, 0], [1.6, 0, 0]])
    elif kind == "empty":
        a = ase.Atoms()
    else:  # degenerate periodic cell
        a = molecule("H2O")
        a.cell = [[5, 0, 0], [0, 0, 0], [0, 0, 5]]
        a.pbc = True
    return a


inputs = st.one_of(
    st.sampled_from(MOLECULES).map(molecule),
    st.sampled_from(["nan", "overlap", "element", "empty", "cell"]).map(_bad_atoms),
    smiles_st,
    st.sampled_from([None, 3, b"CCO"]),
)


@examples(25)
@given(st.lists(inputs, min_size=1, max_size=5))
def test_predict_rows(model, molecules):
    kw = {"embed_timeout": None}
    try:
        df = predict(model, molecules, **kw)
    except Exception as err:  # noqa: BLE001 - predict confines failures to rows
        raise AssertionError(f"predict raised {type(err).__name__}: {err}") from err
    assert len(df) == len(molecules)
    assert df["index"].tolist() == list(range(len(molecules)))
    for k, mol in enumerate(molecules):
        row = df.iloc[k]
        if row["error"]:
            assert isinstance(row["error"], str) and np.isnan(row[ENERGY])
            continue
        assert np.isfinite(row[ENERGY]) and np.isfinite(row["homo_eV"])
        alone = predict(model, [mol], **kw).iloc[0]  # no good record lost or changed
        assert alone["error"] == ""
        np.testing.assert_allclose(row[ENERGY], alone[ENERGY], rtol=1e-9, atol=1e-9)
