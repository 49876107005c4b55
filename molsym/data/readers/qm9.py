"""QM9 in, with every target, from qm9pack's CSVs or from the official release files.

Sources: the CSVs of the PyPI package ``qm9pack`` (found without importing it), or the
official ``dsgdb9nsd_XXXXXX.xyz`` files (a directory, or a .tar/.tar.bz2 of them), which
:func:`fetch_qm9` downloads (``read_qm9("download")``). ``record`` is the 0-based QM9 index
(gdb index - 1); ``info["name"]`` = "dsgdb9nsd_XXXXXX".
"""

from __future__ import annotations

import http.client
import importlib.util
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import ase
import numpy as np

from molsym.atomic import atomic_path
from molsym.data.cache import default_cache_dir
from molsym.data.readers._common import check_on_error, handle, tag, validate
from molsym.errors import InputError
from molsym.units import TO_INTERNAL


class QM9Property(NamedTuple):
    key: str  # molsym name in atoms.info
    csv_column: str  # column of the qm9pack CSVs
    xyz_field: int  # position on line 2 of a release file (0 = "gdb")
    unit: str  # unit in the source files
    internal_unit: str  # unit in atoms.info


#: The one table of QM9 targets. "energy" is U0 again, under molsym's energy key.
PROPERTIES: tuple[QM9Property, ...] = (
    QM9Property("A", "RotA_GHz", 2, "GHz", "GHz"),
    QM9Property("B", "RotB_GHz", 3, "GHz", "GHz"),
    QM9Property("C", "RotC_GHz", 4, "GHz", "GHz"),
    QM9Property("dipole_moment", "Dipole_debye", 5, "Debye", "e*Angstrom"),
    QM9Property("alpha", "Polarizability_bohr3", 6, "Bohr^3", "Angstrom^3"),
    QM9Property("homo", "HOMO_au", 7, "Hartree", "eV"),
    QM9Property("lumo", "LUMO_au", 8, "Hartree", "eV"),
    QM9Property("gap", "HOMO_LUMO_gap_au", 9, "Hartree", "eV"),
    QM9Property("r2", "R2_bohr2", 10, "Bohr^2", "Angstrom^2"),
    QM9Property("zpve", "ZPVE_au", 11, "Hartree", "eV"),
    QM9Property("u0", "InternalEnergy_0K_au", 12, "Hartree", "eV"),
    QM9Property("u", "InternalEnergy_298K_au", 13, "Hartree", "eV"),
    QM9Property("h", "Enthalphy_298K_au", 14, "Hartree", "eV"),
    QM9Property("g", "GibbsFreeEnergy_298K_au", 15, "Hartree", "eV"),
    QM9Property("cv", "Heatcapacity_Cv_cal_mol_K", 16, "cal/mol/K", "cal/mol/K"),
    QM9Property("energy", "InternalEnergy_0K_au", 12, "Hartree", "eV"),
)
_FACTORS = {p.key: TO_INTERNAL[p.unit] for p in PROPERTIES}
NUM_MOLECULES = 133885  # full release; qm9pack holds the 130,831 that passed the checks
#: The official release (Ramakrishnan et al. 2014, figshare), about 86 MB.
QM9_RELEASE_URL = "https://ndownloader.figshare.com/files/3195389"
QM9_RELEASE_FILE = "dsgdb9nsd.xyz.tar.bz2"
log = logging.getLogger(__name__)


def qm9pack_csvs() -> list[Path]:
    """Paths of qm9pack's ``qm9_part{1,2,3}.csv`` (the package is not imported)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("QM9 needs the qm9pack package (pip install qm9pack) or a path")
    root = Path(list(spec.submodule_search_locations)[0]) / "data"
    files = sorted(root.glob("qm9_part*.csv"))
    if not files:
        raise InputError(f"no qm9_part*.csv under {root}")
    return files


def _floats(text: str) -> np.ndarray:
    return np.array(text.replace("[", " ").replace("]", " ").replace(",", " ").split(), float)


def _labels(values: dict[str, float]) -> dict[str, float]:
    return {key: float(values[key]) * _FACTORS[key] for key in _FACTORS}


def _csv_rows(files, max_molecules, wanted) -> Iterator[tuple[str, int, dict]]:
    """Rows of the CSVs in order, read in chunks; stops early (rows are sorted by Index)."""
    import pandas as pd

    cols = ["XYZ_file", "Index", "SMILES", "Elements", "XYZ_Ang", "Mulliken_pop"]
    cols += sorted({p.csv_column for p in PROPERTIES})
    last = max(wanted) if wanted else None
    seen = 0
    for f in files:
        try:
            chunks = pd.read_csv(f, usecols=cols, chunksize=4096)
            for df in chunks:
                if wanted is not None:
                    if df["Index"].iloc[0] > last:
                        return
                    df = df[df["Index"].isin(wanted)]
                for row in df.itertuples(index=False):
                    if max_molecules is not None and seen >= max_molecules:
                        return
                    seen += 1
                    yield str(f), int(row.Index) - 1, row._asdict()
        except (ValueError, OSError, pd.errors.ParserError) as err:
            raise InputError(f"not a qm9pack CSV: {err}", str(f)) from None


def _from_csv_row(row: dict) -> ase.Atoms:
    symbols = row["Elements"].strip("[]").replace("'", "").replace('"', "").split(",")
    pos = _floats(row["XYZ_Ang"]).reshape(-1, 3)
    atoms = ase.Atoms(symbols=[s.strip() for s in symbols], positions=pos)
    atoms.info.update(_labels({p.key: row[p.csv_column] for p in PROPERTIES}))
    atoms.info["smiles"] = row["SMILES"]
    atoms.info["name"] = Path(row["XYZ_file"]).stem
    atoms.arrays["mulliken_charges"] = _floats(row["Mulliken_pop"])
    return atoms


def parse_release_xyz(text: str) -> ase.Atoms:
    """One official QM9 ``dsgdb9nsd_XXXXXX.xyz`` file to ``ase.Atoms`` (raises ValueError)."""
    lines = text.replace("*^", "e").splitlines()
    try:
        n = int(lines[0])
        head = lines[1].split()
        if head[0] != "gdb" or len(head) != 17:
            raise ValueError(f"line 2: expected 'gdb <idx>' and 15 properties, got {lines[1]!r}")
        body = [line.split() for line in lines[2 : 2 + n]]
        if len(body) != n or any(len(b) != 5 for b in body):
            raise ValueError(f"expected {n} lines 'El x y z q' after line 2")
        values = {p.key: float(head[p.xyz_field]) for p in PROPERTIES}
        pos = np.array([b[1:4] for b in body], dtype=float)
        charges = np.array([b[4] for b in body], dtype=float)
        smiles = lines[3 + n].split()[0] if len(lines) > 3 + n else None
    except (IndexError, TypeError) as err:
        raise ValueError(f"truncated or malformed QM9 file ({err})") from None
    atoms = ase.Atoms(symbols=[b[0] for b in body], positions=pos)
    atoms.info.update(_labels(values))
    if smiles:
        atoms.info["smiles"] = smiles
    atoms.info["gdb_index"] = head[1]  # string, so it is no label
    atoms.arrays["mulliken_charges"] = charges
    return atoms


def _release_files(path: Path) -> Iterator[tuple[str, str]]:
    if path.is_dir():
        for f in sorted(path.glob("*.xyz")):
            yield f.name, f.read_text()
        return
    try:
        # One pass in archive order (a compressed tar cannot seek backwards cheaply), then
        # sorted by name so records come in QM9 order whatever order the archive has.
        with tarfile.open(path, "r|*") as tar:
            texts = [
                (Path(m.name).name, tar.extractfile(m).read().decode())
                for m in tar
                if m.isfile() and m.name.endswith(".xyz")
            ]
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InputError(f"cannot read QM9 archive: {err}", str(path)) from None
    yield from sorted(texts)


def fetch_qm9(
    root: str | os.PathLike | None = None,
    url: str | None = None,
    *,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download the official QM9 release archive once; return its path.

    The archive lands in ``root / "dsgdb9nsd.xyz.tar.bz2"`` (``root`` defaults to molsym's
    cache dir + ``/qm9``: ``$MOLSYM_CACHE_DIR/qm9`` or ``~/.cache/molsym/qm9``). Nothing is
    downloaded when that file exists (unless ``force``). The download goes to a temporary file
    in ``root``, is read through once as a tar of ``.xyz`` files, and only then is renamed into
    place, so an interrupted or corrupt download never leaves a file behind. ``url`` defaults
    to :data:`QM9_RELEASE_URL` (figshare); a ``file://`` URL works too.

    Raises:
        InputError: the download failed or is not a QM9 archive (the message names the URL and
            where to put a manually downloaded copy).
    """
    url = QM9_RELEASE_URL if url is None else url
    root = Path(root).expanduser() if root is not None else default_cache_dir() / "qm9"
    dest = root / QM9_RELEASE_FILE
    if dest.is_file() and not force:
        return dest
    hint = (f"download {url} by hand (e.g. in a browser), save it as {dest} and run again, "
            f"or pass the archive's path instead of 'download'")
    try:
        with atomic_path(dest) as tmp:  # renamed into place only once it reads as an archive
            log.info("downloading QM9 (about 86 MB) from %s to %s", url, dest)
            with open(tmp, "wb") as out:
                _download(url, out, timeout, hint)
            _check_release_archive(tmp, url, hint)
    except OSError as err:
        raise InputError(f"cannot write the QM9 download to {root}: {err}", str(dest)) from None
    return dest


def _download(url: str, out: BinaryIO, timeout: float, hint: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "molsym"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, 1 << 20)
            size = out.tell()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise InputError(f"cannot download QM9: {err}; {hint}", url) from None
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise InputError(f"download stopped after {size} of {expected} bytes; {hint}", url)


def _check_release_archive(path: Path, url: str, hint: str) -> None:
    """Read the whole archive once (catches truncation); it must hold ``.xyz`` files."""
    try:
        with tarfile.open(path, "r:*") as tar:
            count = sum(1 for m in tar if m.isfile() and m.name.endswith(".xyz"))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InputError(f"the download is not a QM9 tar archive ({err}); {hint}", url) from None
    if count == 0:
        raise InputError(f"the downloaded archive holds no .xyz files; {hint}", url)


#: Names :func:`read_qm9` takes in place of a path (see :data:`molsym.data.readers.NAMED_SOURCES`).
NAMED_SOURCES = ("qm9pack", "download")


def resolve_named_source(name: str, cache_dir: str | os.PathLike | None = None) -> str | Path:
    """``"download"`` -> the release archive, fetched once into ``cache_dir``/qm9 (default: the
    cache dir); ``"qm9pack"`` stays a name (its CSVs are found when read)."""
    if name == "download":
        return fetch_qm9(None if cache_dir is None else Path(cache_dir) / "qm9")
    return name


def named_source_files(name: str) -> list[Path]:
    """The files behind a named source, whose names, sizes and times key the graph cache."""
    return list(qm9pack_csvs()) if name == "qm9pack" else []


def read_qm9(
    path: str | os.PathLike | None = None,
    *,
    max_molecules: int | None = None,
    indices: Sequence[int] | None = None,
    on_error: str = "raise",
    errors: list | None = None,
) -> list[ase.Atoms]:
    """QM9 molecules with all targets in internal units (see :data:`PROPERTIES`).

    Args:
        path: None or "qm9pack" (qm9pack's CSVs), a qm9pack-style CSV, a directory of release
            ``.xyz`` files or a ``.tar``/``.tar.bz2`` of them, or "download": the official
            release archive, fetched once into the cache dir by :func:`fetch_qm9`.
        max_molecules: keep the first this many molecules.
        indices: 0-based QM9 indices (gdb index - 1) to keep.
    """
    check_on_error(on_error, errors)
    wanted = None if indices is None else {int(i) + 1 for i in indices}
    if path is None or str(path) == "qm9pack" or str(path).endswith(".csv"):
        files = qm9pack_csvs() if path is None or str(path) == "qm9pack" else [Path(path)]
        if not files[0].is_file():
            raise InputError("no such file", str(files[0]))
        rows = ((src, rec, lambda r=row: _from_csv_row(r)) for src, rec, row in
                _csv_rows(files, max_molecules, wanted))
        return _collect(rows, on_error, errors)
    path = fetch_qm9() if str(path) == "download" else Path(path)
    if not path.exists():
        raise InputError("no such file or directory", str(path))

    def release_rows():
        count = 0
        for k, (name, text) in enumerate(_release_files(path)):
            if max_molecules is not None and count >= max_molecules:
                return
            stem = Path(name).stem
            idx = int(stem.rsplit("_", 1)[-1]) if stem.rsplit("_", 1)[-1].isdigit() else k + 1
            if wanted is not None and idx not in wanted:
                continue
            count += 1
            yield f"{path}/{name}", idx - 1, lambda t=text, s=stem: _named(parse_release_xyz(t), s)

    return _collect(release_rows(), on_error, errors)


def _named(atoms: ase.Atoms, name: str) -> ase.Atoms:
    atoms.info.pop("gdb_index", None)
    atoms.info["name"] = name
    return atoms


def _collect(rows, on_error: str, errors: list | None) -> list[ase.Atoms]:
    out = []
    for source, record, build in rows:
        try:
            atoms = build()
            validate(atoms, source, record, "molecule")
        except (ValueError, KeyError) as err:
            exc = err if isinstance(err, InputError) else InputError(
                str(err), source, record, "molecule")
            handle(exc, on_error, errors)
            continue
        out.append(tag(atoms, source, record))
    return out
