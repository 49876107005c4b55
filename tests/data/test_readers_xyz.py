import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from molsym.data.graph import atoms_to_graph
from molsym.data.readers import read_file
from molsym.data.readers.xyz import key_val_str_to_dict, parse_comment, read_xyz
from molsym.errors import InputError

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data
THREE_BPA = str(SHARED_DATA / "3bpa" / "train_300K.xyz")


def _emt_frames(n=4, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = molecule(["H2O", "CH3CH2OH", "CH4", "NH3"][k % 4])
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = EMT()
        a.get_forces()
        frames.append(a)
    return frames


def _same(a, b):
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.cell[:], b.cell[:])
    np.testing.assert_array_equal(a.pbc, b.pbc)
    assert a.info.keys() == b.info.keys() and a.arrays.keys() == b.arrays.keys()
    for k in a.info:
        np.testing.assert_array_equal(a.info[k], b.info[k], err_msg=k)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)


def test_roundtrip_energy_forces(tmp_path):
    frames = _emt_frames()
    path = tmp_path / "emt.extxyz"
    write(path, frames)
    for fast in (True, False):
        got = read_xyz(path, fast=fast)
        assert [a.info["id"] for a in got] == [f"{path}:{k}" for k in range(4)]
        for a, ref in zip(got, frames, strict=True):
            np.testing.assert_allclose(a.positions, ref.positions, atol=1e-7)
            assert a.info["energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-7)
            np.testing.assert_allclose(a.arrays["forces"], ref.get_forces(), atol=1e-7)
            assert not a.pbc.any() and a.calc is None


def test_periodic_stress_dipole_and_extras(tmp_path):
    cu = bulk("Cu", cubic=True) * (2, 1, 1)
    cu.rattle(0.05, seed=1)
    cu.calc = EMT()
    cu.get_stress()
    cu.info["temperature"] = 300
    mol = molecule("H2O")
    mol.calc = SinglePointCalculator(mol, energy=-1.5, dipole=np.array([0.1, -0.2, 0.3]))
    path = tmp_path / "mixed.xyz"
    write(path, [cu, mol], format="extxyz")
    got_fast, got_ase = read_xyz(path), read_xyz(path, fast=False)
    for a, b in zip(got_fast, got_ase, strict=True):
        _same(a, b)
    c, w = got_fast
    assert c.pbc.all() and np.allclose(c.cell[:], cu.cell[:])
    np.testing.assert_allclose(c.info["stress"], cu.get_stress(voigt=False), atol=1e-9)
    assert c.info["temperature"] == 300
    np.testing.assert_allclose(w.info["dipole"], [0.1, -0.2, 0.3])
    graph = atoms_to_graph(c, cutoff=3.0)
    assert tuple(graph.stress.shape) == (1, 3, 3)


def test_units_and_custom_keys(tmp_path):
    frames = _emt_frames(2)
    for a in frames:
        a.info["REF_energy"] = a.get_potential_energy() / (units.kcal / units.mol)
        a.arrays["REF_forces"] = a.get_forces() / (units.kcal / units.mol)
        a.calc = None
    path = tmp_path / "kcal.xyz"
    write(path, frames, format="extxyz")
    got = read_file(path, energy_key="REF_energy", forces_key="REF_forces",
                    energy_unit="kcal/mol", forces_unit="kcal/mol/Angstrom")
    for a, ref in zip(got, _emt_frames(2), strict=True):
        assert a.info["energy"] == pytest.approx(ref.get_potential_energy(), rel=1e-9)
        np.testing.assert_allclose(a.arrays["forces"], ref.get_forces(), atol=1e-9)
    with pytest.raises(ValueError, match="unknown unit"):
        read_file(path, energy_unit="furlong")


def test_lattice_with_pbc_false_is_not_periodic(tmp_path):
    path = tmp_path / "lat.xyz"
    path.write_text('2\nLattice="50 0 0 0 50 0 0 0 50" Properties=species:S:1:pos:R:3 '
                    'energy=-1.0 pbc="F F F"\nH 0 0 0\nH 0 0 0.74\n'
                    '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3\n'
                    'H 0 0 0\nH 0 0 0.74\n')
    a, b = read_xyz(path)
    assert not a.pbc.any() and b.pbc.all()
    assert not bool(atoms_to_graph(a, 5.0).pbc.any())
    _same(a, read_xyz(path, fast=False)[0])


def test_fast_path_matches_ase_on_varied_layouts(tmp_path):
    path = tmp_path / "varied.xyz"
    path.write_text(
        "3\nProperties=species:S:1:pos:R:3:tag:I:1:q:R:1 energy=1e-3 a=2 s=T "
        'vec="1 2 3" label=abc\nO 0 0 0 1 -0.5\nH 0 0 0.96 2 0.25\nH 0.93 0 -0.24 3 0.25\n'
        '2\nProperties=species:S:1:pos:R:3:kind:S:1 data="_JSON [1, 2]"\n'
        "H 0 0 0 a\nH 0 0 0.74 b\n"
        "2\nplain comment text\nH 0 0 0\nH 0 0 0.74\n"
        "2\n\nH 0 0 0\nH 0 0 0.74\n"
    )
    fast, slow = read_xyz(path), read_xyz(path, fast=False)
    assert len(fast) == len(slow) == 4
    for a, b in zip(fast, slow, strict=True):
        _same(a, b)
    assert fast[0].arrays["tag"].dtype.kind == "i" and fast[0].info["energy"] == 1e-3


@pytest.mark.parametrize("comment", [
    'Properties=species:S:1:pos:R:3 energy=-12.5 pbc="F F F"',
    'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 n=3 x=1e5',
    'stress="1 2 3 2 5 6 3 6 9" dipole="0.1 0.2 0.3" name=foo t=F',
    "a=1,2,3 b='quoted' c={1 2} d=[3 4]",
    r'k=v\ w e="x=y"',
])
def test_comment_parser_matches_ase(comment):
    mine, ref = parse_comment(comment), key_val_str_to_dict(comment)
    assert mine.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(mine[k], ref[k])
        assert type(mine[k]) is type(ref[k])


@pytest.mark.skipif(not os.path.exists(THREE_BPA), reason="reference data not present")
def test_3bpa_fast_equals_ase_and_not_periodic():
    fast, slow = read_xyz(THREE_BPA), read_xyz(THREE_BPA, fast=False)
    assert len(fast) == 500
    for a, b in zip(fast[::50], slow[::50], strict=True):
        _same(a, b)
    assert not any(a.pbc.any() for a in fast)


GOOD = "2\nProperties=species:S:1:pos:R:3 energy=1.0\nH 0 0 0\nH 0 0 0.74\n"
BAD_FRAMES = {
    "fewer_atoms": ("3\nenergy=2.0\nH 0 0 0\nH 0 0 0.74\n", "fewer atom lines"),
    "more_atoms": ("1\nenergy=2.0\nH 0 0 0\nH 0 0 0.74\n", "more atom lines"),
    "non_numeric": ("2\nenergy=2.0\nH 0 0 zero\nH 0 0 0.74\n", "non-numeric"),
    "unknown_element": ("2\nenergy=2.0\nQq 0 0 0\nH 0 0 0.74\n", "unknown element"),
    "nan": ("2\nenergy=2.0\nH 0 0 nan\nH 0 0 0.74\n", "non-finite"),
    "inf": ("2\nenergy=2.0\nH 0 0 inf\nH 0 0 0.74\n", "non-finite"),
    "too_close": ("2\nenergy=2.0\nH 0 0 0\nH 0 0 0.05\n", "Angstrom apart"),
    "bad_count": ("two\nenergy=2.0\nH 0 0 0\nH 0 0 0.74\n", "number of atoms"),
    "missing_column": ("2\nenergy=2.0\nH 0 0\nH 0 0 0.74\n", "columns"),
}


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frame_raises_and_skip_keeps_the_rest(tmp_path, case, fast):
    text, message = BAD_FRAMES[case]
    path = tmp_path / f"{case}.xyz"
    path.write_text(GOOD + text + GOOD)
    with pytest.raises(InputError, match=rf"{case}\.xyz, frame 1: line \d+: .*{message}"):
        read_xyz(path, fast=fast)
    errors = []
    got = read_xyz(path, on_error="skip", errors=errors, fast=fast)
    assert [a.info["energy"] for a in got] == [1.0, 1.0]
    assert len(errors) == 1 and errors[0].record == 1 and errors[0].source == str(path)


def test_truncated_last_frame(tmp_path):
    path = tmp_path / "trunc.xyz"
    path.write_text(GOOD + GOOD + "2\nenergy=3.0\nH 0 0 0\n")
    with pytest.raises(InputError, match=r"trunc\.xyz, frame 2: line 9: truncated"):
        read_file(path)
    errors = []
    assert len(read_file(path, on_error="skip", errors=errors)) == 2 and len(errors) == 1


def test_empty_missing_unreadable(tmp_path):
    (tmp_path / "empty.xyz").write_text("")
    (tmp_path / "blank.extxyz").write_text("\n\n")
    (tmp_path / "binary.xyz").write_bytes(b"\xff\xfe\x00\x81" * 10)
    for name in ["empty.xyz", "blank.extxyz", "missing.xyz", "binary.xyz"]:
        with pytest.raises(InputError, match=name):
            read_file(tmp_path / name)


def test_single_atom_and_numbers_as_species(tmp_path):
    path = tmp_path / "z.xyz"
    path.write_text("1\n\nAr 0 0 0\n3\n\n8 0 0 0\n1 0 0 0.96\n1 0.93 0 -0.24\n")
    ar, water = read_xyz(path)
    assert len(ar) == 1 and water.get_chemical_formula() == "H2O"
    assert isinstance(water, Atoms)


def test_fast_path_matches_ase_on_random_frames(tmp_path):
    rng = np.random.default_rng(3)
    frames = []
    for k in range(25):
        n = int(rng.integers(1, 12))
        a = Atoms(numbers=rng.integers(1, 55, size=n),
                  positions=rng.uniform(-4, 4, size=(n, 3)) * np.arange(1, n + 1)[:, None] / n)
        if k % 3 == 0:
            a.cell = np.diag(rng.uniform(20, 30, size=3))
            a.pbc = [bool(x) for x in rng.integers(0, 2, size=3)]
        a.arrays["q"] = rng.normal(size=n)
        a.arrays["tag"] = rng.integers(-5, 5, size=n)
        a.info.update(step=int(k), t=float(rng.normal()), phase=["a", "b"][k % 2])
        results = {"energy": float(rng.normal()), "forces": rng.normal(size=(n, 3))}
        if k % 4 == 0:
            s = rng.normal(size=(3, 3))
            results["stress"] = (s + s.T).reshape(9)[[0, 4, 8, 5, 2, 1]]
        a.calc = SinglePointCalculator(a, **results)
        frames.append(a)
    path = tmp_path / "random.extxyz"
    write(path, frames)
    fast, slow = read_xyz(path), read_xyz(path, fast=False)
    assert len(fast) == len(slow) == 25
    for a, b in zip(fast, slow, strict=True):
        _same(a, b)


def test_atoms_too_close_through_a_periodic_boundary(tmp_path):
    path = tmp_path / "pbc.xyz"
    frame = ('2\nLattice="10 0 0 0 10 0 0 0 10" Properties=species:S:1:pos:R:3 pbc="{}"\n'
             "H 0.02 5 5\nH 9.97 5 5\n")
    path.write_text(frame.format("T F F") + frame.format("F T T"))
    errors = []
    (ok,) = read_xyz(path, on_error="skip", errors=errors)
    assert not ok.pbc[0] and errors[0].record == 0 and "0.05 Angstrom apart" in str(errors[0])
