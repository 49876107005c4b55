"""Fuzz the readers: random SMILES, mutated XYZ/extxyz/SDF text.

Invariant: every record is either a finite structure or an :class:`InputError` naming the
record; never a bare exception, never a good record lost because of a bad neighbour.
"""

from __future__ import annotations

import io

import ase
import ase.io
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from molsym.data.readers import read_file, read_smiles
from molsym.errors import InputError, MolsymError
from tests.fuzz.strategies import (
    MOLECULES,
    assert_finite_atoms,
    check_molsym_error,
    examples,
    molecule,
)
from tests.fuzz.strategies import smiles as smiles_st

EMBED = {"embed_timeout": None, "num_workers": 1}  # in-process: fast, same code path


def _read_smiles_skip(batch: list[str]):
    errors: list = []
    atoms = read_smiles(batch, on_error="skip", errors=errors, **EMBED)
    return atoms, errors


@examples(40)
@given(st.lists(smiles_st, min_size=1, max_size=4))
def test_read_smiles_every_record_accounted_for(batch):
    try:
        atoms, errors = _read_smiles_skip(batch)
    except MolsymError as err:  # pragma: no cover - the skip mode should never raise
        check_molsym_error(err)
        return
    for err in errors:
        assert isinstance(err, InputError), repr(err)
        assert err.record is not None and 0 <= int(err.record) < len(batch), str(err)
    records = sorted([int(a.info["record"]) for a in atoms] + [int(e.record) for e in errors])
    assert records == list(range(len(batch))), (records, batch)
    for a in atoms:
        assert_finite_atoms(a)
    # no good record lost: a SMILES that embeds alone embeds in the batch, identically
    for a in atoms:
        alone, _ = _read_smiles_skip([batch[int(a.info["record"])]])
        assert len(alone) == 1
        np.testing.assert_array_equal(alone[0].numbers, a.numbers)
        np.testing.assert_allclose(alone[0].positions, a.positions, atol=1e-8)


@examples(20)
@given(smiles_st)
def test_read_smiles_raise_mode_raises_input_error(s):
    try:
        atoms = read_smiles([s], **EMBED)
    except Exception as err:  # noqa: BLE001 - the point: which exception it is
        check_molsym_error(err)
        assert isinstance(err, InputError)
        return
    assert len(atoms) == 1
    assert_finite_atoms(atoms[0])


# ---- text files ---------------------------------------------------------------------------

def _frames(names: list[str]) -> list[ase.Atoms]:
    out = []
    for k, name in enumerate(names):
        a = molecule(name)
        a.info["energy"] = -float(k + 1)
        out.append(a)
    return out


def _xyz_text(frames: list[ase.Atoms]) -> str:
    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    return buf.getvalue()


GARBAGE = st.sampled_from(["", "x", "nan", "inf", "3", "-1", "1e999", "H 0 0", "Xx 0 0 0",
                           "C nan 0 0", "  ", "Properties=foo", "\t", "0", "C 0 0 0 0 0 0",
                           'energy="abc"', "$$$$", "M  END", "\x00"])


@st.composite
def mutations(draw, n_lines: int):
    kind = draw(st.sampled_from(["replace", "delete", "insert", "truncate", "char"]))
    line = draw(st.integers(0, n_lines - 1))
    text = draw(st.one_of(GARBAGE, st.text(max_size=10)))
    pos = draw(st.integers(0, 80))
    return kind, line, text, pos


def _mutate(lines: list[str], mutation) -> list[str]:
    kind, k, text, pos = mutation
    lines = list(lines)
    if kind == "replace":
        lines[k] = text
    elif kind == "delete":
        del lines[k]
    elif kind == "insert":
        lines.insert(k, text)
    elif kind == "truncate":
        lines = lines[:k]
    else:
        lines[k] = lines[k][:pos] + text + lines[k][pos + 1:]
    return lines


def _read_skip(path, fmt=None):
    errors: list = []
    try:
        atoms = read_file(path, format=fmt, on_error="skip", errors=errors)
    except Exception as err:  # noqa: BLE001 - the whole file refused: must be ours
        check_molsym_error(err)
        return None, []
    for err in errors:
        assert isinstance(err, InputError), repr(err)
        assert err.record is not None, str(err)
    for a in atoms:
        assert_finite_atoms(a)
    return atoms, errors


def _frame_of_line(frames: list[ase.Atoms], line: int) -> int:
    start = 0
    for k, a in enumerate(frames):
        start += len(a) + 2
        if line < start:
            return k
    return len(frames)


@given(st.lists(st.sampled_from(MOLECULES), min_size=1, max_size=4), st.data())
def test_mutated_xyz(tmp_path_factory, names, data):
    frames = _frames(names)
    lines = _xyz_text(frames).splitlines()
    mutation = data.draw(mutations(len(lines)))
    path = tmp_path_factory.mktemp("xyz") / "f.extxyz"
    path.write_text("\n".join(_mutate(lines, mutation)) + "\n")
    atoms, _ = _read_skip(path)
    if atoms is None:
        return
    # the frames before the mutated one are read back exactly
    hit = _frame_of_line(frames, mutation[1])
    by_record = {int(a.info["record"]): a for a in atoms}
    starts = np.cumsum([0] + [len(a) + 2 for a in frames])
    at_start = mutation[1] == starts[hit] and mutation[0] != "char"
    for k in range(hit):
        if k == hit - 1 and at_start:
            # the next frame's count line became an atom line: frame k may have lost its
            # real count, so the reader refuses it (an error naming the frame)
            continue
        assert k in by_record, (k, mutation)
        np.testing.assert_allclose(by_record[k].positions, frames[k].positions, atol=1e-6)
        np.testing.assert_array_equal(by_record[k].numbers, frames[k].numbers)


def _sdf_text(names: list[str]) -> str:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    blocks = []
    for k, s in enumerate(names):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        mol.SetProp("_Name", f"mol{k}")
        blocks.append(Chem.MolToMolBlock(mol) + "$$$$")
    return "\n".join(blocks) + "\n"


SDF_SMILES = ["CCO", "O", "C=O", "CC#N", "c1ccccc1"]


@given(st.lists(st.sampled_from(SDF_SMILES), min_size=1, max_size=4), st.data())
def test_mutated_sdf(tmp_path_factory, names, data):
    good = _sdf_text(names)
    lines = good.splitlines()
    mutation = data.draw(mutations(len(lines)))
    new = _mutate(lines, mutation)
    path = tmp_path_factory.mktemp("sdf") / "f.sdf"
    path.write_text("\n".join(new) + "\n")
    atoms, errors = _read_skip(path)
    if atoms is None:
        return
    # records whose lines were not touched are still read (the $$$$ lines delimit them)
    bounds = [i for i, line in enumerate(lines) if line == "$$$$"]
    hit = next(k for k, b in enumerate(bounds + [len(lines)]) if mutation[1] <= b)
    touched_delimiter = "$$$$" in (lines[mutation[1]], mutation[2]) or mutation[0] == "truncate"
    records = {int(a.info["record"]) for a in atoms}
    for k in range(len(names)):
        if k < hit or (k > hit and not touched_delimiter):
            assert k in records, (k, mutation, records, [str(e) for e in errors])


@pytest.mark.parametrize("fmt", ["xyz", "sdf", "smi", "csv"])
@examples(15)
@given(blob=st.binary(max_size=200))
def test_random_bytes_files(tmp_path_factory, fmt, blob):
    path = tmp_path_factory.mktemp("bytes") / f"f.{fmt}"
    path.write_bytes(blob)
    try:
        errors: list = []
        atoms = read_file(path, on_error="skip", errors=errors, **(
            EMBED if fmt in ("smi", "csv") else {}))
    except Exception as err:  # noqa: BLE001
        check_molsym_error(err)
        return
    for err in errors:
        assert isinstance(err, InputError)
    for a in atoms:
        assert_finite_atoms(a)
