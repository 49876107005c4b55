import importlib.util
import tarfile
from ast import literal_eval

import numpy as np
import pytest
from ase import units

from molsym.data.readers import QM9_PROPERTIES, read_file
from molsym.data.readers import qm9 as qm9_module
from molsym.data.readers.qm9 import QM9_RELEASE_FILE, fetch_qm9, read_qm9
from molsym.errors import InputError

HAVE_QM9PACK = importlib.util.find_spec("qm9pack") is not None


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """No test may reach the network: the default release URL points at a missing file."""
    monkeypatch.setattr(qm9_module, "QM9_RELEASE_URL", (tmp_path / "offline").as_uri())

# Values in the release's own units: A B C (GHz) mu (D) alpha (Bohr^3) homo lumo gap (Ha)
# r2 (Bohr^2) zpve U0 U H G (Ha) Cv (cal/mol/K)
METHANE = dict(
    idx=1, props=[157.7118, 157.70997, 157.70699, 0.0, 13.21, -0.3877, 0.1171, 0.5048, 35.3641,
                  0.044749, -40.47893, -40.476062, -40.475117, -40.498597, 6.469],
    atoms=[("C", -0.0126981359, 1.0858041578, 0.0080009958, -0.535689),
           ("H", 0.002150416, -0.0060313176, 0.0019761204, 0.133921),
           ("H", 1.0117308433, 1.4637511618, 0.0002765748, 0.133922),
           ("H", -0.540815069, 1.4475266138, -0.8766437152, 0.133923),
           ("H", -0.5238136345, 1.4379326443, 0.9063972942, 0.133923)],
    smiles="C")
WATER = dict(
    idx=3, props=[799.58812, 437.90386, 282.94545, 1.8511, 6.31, -0.2928, 0.0687, 0.3615,
                  19.0002, 0.021375, -76.404702, -76.401867, -76.400922, -76.422349, 6.002],
    atoms=[("O", -0.0343604951, 0.9775395708, 0.0076015923, -0.589706),
           ("H", 0.0647664923, 0.0205721989, 0.0015346341, 0.294853),
           ("H", 0.8717903737, 1.3007924048, 0.0006931336, 0.294853)],
    smiles="O")


def _mathematica(x: float) -> str:
    """Numbers as the release writes small ones: 2.1*^-6."""
    if x != 0 and abs(x) < 1e-3:
        mant, exp = f"{x:.6e}".split("e")
        return f"{mant}*^{int(exp)}"
    return repr(float(x))


def release_text(mol: dict) -> str:
    lines = [str(len(mol["atoms"])),
             "\t".join(["gdb", str(mol["idx"])] + [_mathematica(v) for v in mol["props"]])]
    for el, x, y, z, q in mol["atoms"]:
        lines.append("\t".join([el] + [_mathematica(v) for v in (x, y, z, q)]))
    lines += ["1341.307\t1562.6731\t3038.3205", f"{mol['smiles']}\t{mol['smiles']}",
              "InChI=1S/X\tInChI=1S/X"]
    return "\n".join(lines) + "\n"


def _write_dir(tmp_path, mols):
    d = tmp_path / "qm9"
    d.mkdir(parents=True)
    for mol in mols:
        (d / f"dsgdb9nsd_{mol['idx']:06d}.xyz").write_text(release_text(mol))
    return d


def _write_tar(tmp_path, mols, name="dsgdb9nsd.xyz.tar.bz2"):
    d = _write_dir(tmp_path / "src", mols)
    tar = tmp_path / name
    with tarfile.open(tar, "w:bz2") as t:
        for f in sorted(d.iterdir()):
            t.add(f, arcname=f.name)
    return tar


def _check(atoms, mol):
    factor = {"Hartree": units.Hartree, "Debye": units.Debye, "Bohr^3": units.Bohr**3,
              "Bohr^2": units.Bohr**2, "GHz": 1.0, "cal/mol/K": 1.0}
    for p in QM9_PROPERTIES:
        raw = mol["props"][p.xyz_field - 2]
        assert atoms.info[p.key] == pytest.approx(raw * factor[p.unit], rel=1e-12), p.key
    assert atoms.info["energy"] == pytest.approx(mol["props"][10] * units.Hartree)
    np.testing.assert_allclose(atoms.positions, [a[1:4] for a in mol["atoms"]])
    np.testing.assert_allclose(atoms.arrays["mulliken_charges"], [a[4] for a in mol["atoms"]])
    assert atoms.info["smiles"] == mol["smiles"]
    assert atoms.info["record"] == mol["idx"] - 1
    assert atoms.info["name"] == f"dsgdb9nsd_{mol['idx']:06d}"


def test_property_table_is_complete():
    keys = {p.key for p in QM9_PROPERTIES}
    assert keys == {"A", "B", "C", "dipole_moment", "alpha", "homo", "lumo", "gap", "r2",
                    "zpve", "u0", "u", "h", "g", "cv", "energy"}
    assert sorted({p.xyz_field for p in QM9_PROPERTIES}) == list(range(2, 17))


def test_release_directory_and_tarball(tmp_path):
    d = _write_dir(tmp_path, [METHANE, WATER])
    got = read_file(d, format="qm9")
    _check(got[0], METHANE)
    _check(got[1], WATER)
    assert "*^" in (d / "dsgdb9nsd_000001.xyz").read_text()
    tar = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
    with tarfile.open(tar, "w:bz2") as t:
        for f in sorted(d.iterdir(), reverse=True):  # archive order != QM9 order
            t.add(f, arcname=f.name)
    from_tar = read_qm9(tar)
    for a, b in zip(got, from_tar, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert {k: a.info[k] for k in ("u0", "gap")} == {k: b.info[k] for k in ("u0", "gap")}
    assert [a.info["name"] for a in read_qm9(tar, indices=[2])] == ["dsgdb9nsd_000003"]
    assert len(read_qm9(d, max_molecules=1)) == 1


def test_release_bad_files(tmp_path):
    bad_el = dict(WATER, idx=4, atoms=[("Zz",) + WATER["atoms"][0][1:]] + WATER["atoms"][1:])
    d = _write_dir(tmp_path, [METHANE, WATER, bad_el])
    (d / "dsgdb9nsd_000002.xyz").write_text(release_text(METHANE)[:120])  # truncated
    with pytest.raises(InputError, match=r"dsgdb9nsd_000002\.xyz, molecule 1"):
        read_qm9(d)
    errors = []
    got = read_qm9(d, on_error="skip", errors=errors)
    assert [a.info["record"] for a in got] == [0, 2]
    assert [e.record for e in errors] == [1, 3]
    with pytest.raises(InputError, match="no such file"):
        read_qm9(tmp_path / "nowhere")


@pytest.mark.skipif(not HAVE_QM9PACK, reason="qm9pack not installed")
def test_qm9pack_csv_matches_release_format(tmp_path):
    import pandas as pd

    from molsym.data.readers.qm9 import qm9pack_csvs

    csv_atoms = read_qm9(max_molecules=3)
    assert [a.info["record"] for a in csv_atoms] == [0, 1, 2]
    df = pd.read_csv(qm9pack_csvs()[0], nrows=3)
    for atoms, (_, row) in zip(csv_atoms, df.iterrows(), strict=True):
        symbols = literal_eval(row["Elements"])
        pos = np.array(literal_eval(row["XYZ_Ang"]))
        charges = literal_eval(row["Mulliken_pop"])
        table = sorted(QM9_PROPERTIES[:15], key=lambda p: p.xyz_field)
        props = [row[p.csv_column] for p in table]
        mol = dict(idx=int(row["Index"]), props=props, smiles=row["SMILES"],
                   atoms=[(s, *xyz, q) for s, xyz, q in zip(symbols, pos, charges, strict=True)])
        _check(atoms, mol)
        (release,) = read_qm9(_write_dir(tmp_path / str(row["Index"]), [mol]))
        assert release.info.keys() == atoms.info.keys()
        for key in atoms.info:
            if key not in ("id", "source"):
                want = atoms.info[key]
                want = want if isinstance(want, str) else pytest.approx(want, rel=1e-12)
                assert release.info[key] == want, key
    assert [a.info["name"] for a in read_qm9(indices=[4])] == ["dsgdb9nsd_000005"]


def test_fetch_downloads_once_atomically(tmp_path):
    src = _write_tar(tmp_path, [METHANE, WATER], name="remote.tar.bz2")
    root = tmp_path / "cache" / "qm9"
    got = fetch_qm9(root, src.as_uri())
    assert got == root / QM9_RELEASE_FILE and got.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == [QM9_RELEASE_FILE]  # no temp file left
    src.unlink()
    assert fetch_qm9(root, src.as_uri()) == got  # second call: no download (source is gone)
    with pytest.raises(InputError, match="cannot download"):
        fetch_qm9(root, src.as_uri(), force=True)
    assert got.is_file()  # a failed re-download keeps the good file
    mols = read_qm9(got)
    _check(mols[0], METHANE)
    _check(mols[1], WATER)


def test_fetch_rejects_corrupt_and_truncated_downloads(tmp_path):
    root = tmp_path / "qm9"
    html = tmp_path / "error.html"
    html.write_text("<html>Rate limit exceeded</html>")
    with pytest.raises(InputError, match="not a QM9 tar archive") as info:
        fetch_qm9(root, html.as_uri())
    msg = str(info.value)
    assert html.as_uri() in msg and str(root / QM9_RELEASE_FILE) in msg and "by hand" in msg
    assert list(root.iterdir()) == []
    good = _write_tar(tmp_path, [METHANE, WATER])
    cut = tmp_path / "cut.tar.bz2"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="not a QM9 tar archive"):
        fetch_qm9(root, cut.as_uri())
    assert list(root.iterdir()) == []
    missing = tmp_path / "nowhere.tar.bz2"
    with pytest.raises(InputError, match="cannot download QM9.*by hand") as info:
        fetch_qm9(root, missing.as_uri())
    assert missing.as_uri() in str(info.value)
    assert list(root.iterdir()) == []


def test_read_download_uses_cache_dir(tmp_path, monkeypatch):
    """``"download"`` reads the archive fetched into the cache dir; never the network here."""
    from molsym.data.dataset import GraphDataset

    monkeypatch.setenv("MOLSYM_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="offline"):
        read_file("download", format="qm9")
    src = _write_tar(tmp_path, [METHANE, WATER], name="remote.tar.bz2")
    monkeypatch.setattr(qm9_module, "QM9_RELEASE_URL", src.as_uri())
    got = read_file("download", format="qm9")
    assert (tmp_path / "cache" / "qm9" / QM9_RELEASE_FILE).is_file()
    _check(got[0], METHANE)
    _check(got[1], WATER)
    ds = GraphDataset.from_file("download", 5.0, format="qm9", cache_dir=tmp_path / "graphs")
    assert (tmp_path / "graphs" / "qm9" / QM9_RELEASE_FILE).is_file()
    assert len(ds) == 2 and float(ds[1].energy) == pytest.approx(got[1].info["energy"])
