"""SMILES in: strings, .smi files and .csv tables, embedded in 3D with RDKit.

Each SMILES gets explicit hydrogens, ETKDGv3 coordinates (fixed seed) and an MMFF94
optimisation (UFF when MMFF has no parameters). Formal charges go to
``info["total_charge"]`` (e); stereochemistry written in the SMILES is kept by the embedding.
Embedding runs over ``num_workers`` processes; the output order is the input order.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Mapping, Sequence

import ase
import numpy as np

from molsym.data.readers._common import check_on_error, convert_labels, handle, is_number, tag
from molsym.data.readers._workers import run_with_timeout
from molsym.errors import InputError

DEFAULT_SEED = 42
_MAX_ITERS = 2000
#: SMILES with more heavy atoms than this are refused (an error row), not embedded.
DEFAULT_MAX_HEAVY_ATOMS = 500
#: Seconds one SMILES may take to embed and optimise before it becomes an error row.
DEFAULT_EMBED_TIMEOUT = 60.0
#: What to do with a SMILES of several fragments (``CCO.O``, ``[NH4+].[F-]``).
FRAGMENTS = ("separate", "largest")
#: Smallest distance (Angstrom) between two separately embedded fragments.
FRAGMENT_GAP = 5.0


def max_smiles_length(max_heavy_atoms: int) -> int:
    """Longest SMILES string parsed at all: 20 characters per allowed heavy atom (at least
    10,000), so a pathological string is refused before RDKit builds it."""
    return max(10_000, 20 * int(max_heavy_atoms))


def embed_smiles(
    smiles: str, num_conformers: int = 1, seed: int = DEFAULT_SEED, optimize: bool = True,
    fragments: str = "separate", max_heavy_atoms: int = DEFAULT_MAX_HEAVY_ATOMS,
    timeout: float | None = None,
) -> tuple[np.ndarray, list[np.ndarray], int, str] | str:
    """Embed one SMILES. Returns ``(atomic numbers (N,), [positions (N, 3) Angstrom per
    conformer], total formal charge, note)`` or, on failure, a string that says why.

    Several fragments are embedded one by one and placed side by side along x, at least
    :data:`FRAGMENT_GAP` Angstrom apart (``fragments="separate"``), or only the one with the
    most heavy atoms is kept (``"largest"``); ``note`` says which ('' for one fragment).
    ``timeout`` (seconds) is passed to RDKit's ETKDG (a soft limit: callers that need a hard
    one run this in a process they can kill, see :func:`embed_records`).
    """
    from rdkit import Chem, RDLogger

    if fragments not in FRAGMENTS:
        raise ValueError(f"fragments must be one of {FRAGMENTS}, got {fragments!r}")
    RDLogger.DisableLog("rdApp.*")
    if len(smiles) > max_smiles_length(max_heavy_atoms):
        return (f"SMILES of {len(smiles)} characters is too long (at most "
                f"{max_smiles_length(max_heavy_atoms)} with max_heavy_atoms={max_heavy_atoms})")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return f"invalid SMILES {smiles!r}"
    if any(a.GetAtomicNum() == 0 for a in mol.GetAtoms()):
        return f"SMILES {smiles!r} has a dummy atom '*' (atomic number 0), not an element"
    if mol.GetNumHeavyAtoms() > max_heavy_atoms:
        return (f"{mol.GetNumHeavyAtoms()} heavy atoms, more than max_heavy_atoms="
                f"{max_heavy_atoms}")
    parts = Chem.GetMolFrags(mol, asMols=True)
    note = ""
    if len(parts) > 1 and fragments == "largest":
        mol = max(parts, key=lambda m: m.GetNumHeavyAtoms())  # first of the largest
        note = (f"largest of {len(parts)} fragments kept ({Chem.MolToSmiles(mol)}); "
                f"the others were dropped")
        parts = (mol,)
    elif len(parts) > 1:
        note = (f"{len(parts)} fragments embedded separately, >= {FRAGMENT_GAP:g} Angstrom "
                f"apart")
    try:
        res = _embed_parts(smiles, mol, len(parts), num_conformers, seed, optimize, timeout)
    except MemoryError:
        return f"out of memory embedding {smiles!r}"
    return res if isinstance(res, str) else (*res, note)


def _embed_parts(smiles: str, mol, num_parts: int, num_conformers: int, seed: int, optimize: bool,
                 timeout: float | None) -> tuple[np.ndarray, list[np.ndarray], int] | str:
    """Embed ``mol`` (one fragment) or each of its ``num_parts`` fragments, atoms in ``mol``'s
    order: heavy atoms as in the SMILES, then the hydrogens."""
    from rdkit import Chem

    heavy = [a.GetAtomicNum() for a in mol.GetAtoms()]
    mol = Chem.AddHs(mol)  # appends the new hydrogens after the SMILES's own atoms
    z = np.ones(mol.GetNumAtoms(), dtype=np.int64)
    z[: len(heavy)] = heavy
    charge = Chem.GetFormalCharge(mol)
    if num_parts == 1:
        confs = _embed_one(mol, num_conformers, seed, optimize, timeout)
        return (z, confs, charge) if confs else f"RDKit could not embed {smiles!r} in 3D"
    mapping: list = []
    frags = Chem.GetMolFrags(mol, asMols=True, fragsMolAtomMapping=mapping)
    confs = [np.zeros((mol.GetNumAtoms(), 3)) for _ in range(num_conformers)]
    offset = 0.0
    for frag, atoms in zip(frags, mapping, strict=True):
        frag_confs = _embed_one(frag, num_conformers, seed, optimize, timeout)
        if not frag_confs:
            return f"RDKit could not embed fragment {Chem.MolToSmiles(frag)!r} in 3D"
        frag_confs += [frag_confs[0]] * (num_conformers - len(frag_confs))
        width = max(float(np.ptp(c[:, 0])) for c in frag_confs)
        for conf, pos in zip(confs, frag_confs, strict=True):
            conf[list(atoms)] = pos - [pos[:, 0].min() - offset, *pos[:, 1:].mean(axis=0)]
        offset += width + FRAGMENT_GAP
    return z, confs, charge


def _embed_one(mol, num_conformers: int, seed: int, optimize: bool,
               timeout: float | None) -> list[np.ndarray]:
    """Conformers (N, 3) of one connected molecule with hydrogens ([] if RDKit fails)."""
    from rdkit.Chem import AllChem

    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if timeout:
        params.timeout = max(1, int(timeout))
    cids = _embed(mol, params, num_conformers)
    if not cids:
        params.useRandomCoords = True
        cids = _embed(mol, params, num_conformers)
    if not cids:
        return []
    if optimize:
        _optimize(mol, len(cids))
    return [np.array(mol.GetConformer(c).GetPositions()) for c in cids]


def _embed(mol, params, num_conformers: int) -> list[int]:
    from rdkit.Chem import AllChem

    if num_conformers == 1:
        return [0] if AllChem.EmbedMolecule(mol, params) == 0 else []
    return list(AllChem.EmbedMultipleConfs(mol, num_conformers, params))


def _optimize(mol, num_conformers: int) -> None:
    """MMFF94, or UFF when MMFF lacks parameters (one conformer: the plain RDKit calls)."""
    from rdkit.Chem import AllChem

    if num_conformers == 1:  # returns -1 when MMFF cannot be set up (missing parameters)
        if AllChem.MMFFOptimizeMolecule(mol, maxIters=_MAX_ITERS) == -1:
            if AllChem.UFFHasAllMoleculeParams(mol):
                AllChem.UFFOptimizeMolecule(mol, maxIters=_MAX_ITERS)
    elif AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=_MAX_ITERS)
    elif AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=_MAX_ITERS)


def _embed_task(args: tuple) -> tuple | str:
    smiles, num_conformers, seed, options = args
    try:
        return embed_smiles(smiles, num_conformers, seed, **options)
    except (RuntimeError, ValueError) as err:  # an RDKit pre-condition or sanitising failure
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"RDKit failed on {smiles!r}: {first}"


def _run_embedding(tasks: list[tuple], num_workers: int, timeout: float | None) -> list:
    """Embed every task; with a ``timeout`` in worker processes (a hard limit per SMILES, and
    Ctrl-C answered at once), else in this process or a pool of ``num_workers``."""
    if timeout:
        return run_with_timeout(
            _embed_task, tasks, num_workers, timeout,
            on_timeout=lambda t: f"embedding took longer than {timeout:g} s (embed_timeout)",
            on_crash=lambda t: "the embedding process died (out of memory?)",
        )
    if num_workers <= 1 or len(tasks) < 2:
        return [_embed_task(t) for t in tasks]
    num_workers = min(num_workers, len(tasks))
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    chunk = max(1, math.ceil(len(tasks) / (num_workers * 8)))
    with mp.get_context(method).Pool(num_workers) as pool:
        return pool.map(_embed_task, tasks, chunksize=chunk)


def embed_records(
    records: Sequence[tuple[int, str, str | None, dict]],
    source: str,
    *,
    num_conformers: int = 1,
    seed: int = DEFAULT_SEED,
    num_workers: int | None = None,
    on_error: str = "raise",
    errors: list | None = None,
    record_kind: str = "record",
    fragments: str = "separate",
    max_heavy_atoms: int = DEFAULT_MAX_HEAVY_ATOMS,
    embed_timeout: float | None = DEFAULT_EMBED_TIMEOUT,
) -> list[ase.Atoms]:
    """Embed ``(record, smiles, name, labels)`` tuples into tagged ``ase.Atoms``.

    ``fragments`` and ``max_heavy_atoms``: see :func:`embed_smiles`. ``embed_timeout``
    (seconds, None or 0: no limit) bounds each SMILES: embedding then runs in worker
    processes, a SMILES past the limit gets an error, and Ctrl-C stops at once. A structure
    built from several fragments (or from the largest one) says so in ``info["warning"]``.
    """
    check_on_error(on_error, errors)
    if num_conformers < 1:
        raise ValueError("num_conformers must be >= 1")
    if fragments not in FRAGMENTS:
        raise ValueError(f"fragments must be one of {FRAGMENTS}, got {fragments!r}")
    workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
    options = {"fragments": fragments, "max_heavy_atoms": int(max_heavy_atoms),
               "timeout": embed_timeout}
    tasks = [(r[1], num_conformers, seed, options) for r in records]
    results = _run_embedding(tasks, workers, embed_timeout)
    out: list[ase.Atoms] = []
    for (record, smi, name, labels), res in zip(records, results, strict=True):
        if isinstance(res, str):
            err = InputError(res, source, record, record_kind, smiles=smi, name=name)
            handle(err, on_error, errors)
            continue
        z, confs, charge, note = res
        for k, pos in enumerate(confs):
            atoms = ase.Atoms(numbers=z, positions=pos)
            atoms.info.update(labels)
            atoms.info["smiles"] = smi
            atoms.info["total_charge"] = float(charge)
            if name is not None:
                atoms.info["name"] = name
            if note:
                atoms.info["warning"] = note
            out.append(tag(atoms, source, record, f":{k}" if num_conformers > 1 else ""))
    return out


def read_smiles(
    smiles: str | Sequence[str],
    *,
    names: Sequence[str] | None = None,
    num_conformers: int = 1,
    seed: int = DEFAULT_SEED,
    num_workers: int | None = None,
    on_error: str = "raise",
    errors: list | None = None,
    source: str = "cli",
    **options,
) -> list[ase.Atoms]:
    """3D structures from SMILES strings (record = 0-based position in the list).

    With ``num_conformers > 1`` each SMILES gives that many conformers, with ids
    ``"<source>:<record>:<conformer>"``. ``num_workers`` defaults to the number of cores.
    ``options`` (``fragments``, ``max_heavy_atoms``, ``embed_timeout``) go to
    :func:`embed_records`.
    """
    smiles_list = [smiles] if isinstance(smiles, str) else list(smiles)
    if names is not None and len(names) != len(smiles_list):
        raise ValueError(f"got {len(names)} names for {len(smiles_list)} SMILES")
    records = [
        (i, s.strip(), None if names is None else str(names[i]), {})
        for i, s in enumerate(smiles_list)
    ]
    return embed_records(
        records, source, num_conformers=num_conformers, seed=seed, num_workers=num_workers,
        on_error=on_error, errors=errors, **options,
    )


def read_smi(
    path: str | os.PathLike, *, on_error: str = "raise", errors: list | None = None, **options
) -> list[ase.Atoms]:
    """A ``.smi`` file: one ``SMILES [name]`` per line; blank lines and ``#`` comments skipped.
    ``record`` is the 1-based line number. ``options`` go to :func:`embed_records`."""
    source = str(path)
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(None, 1)
            name = parts[1].strip() if len(parts) > 1 else None
            records.append((lineno, parts[0], name, {}))
    if not records:
        raise InputError("file holds no SMILES", source)
    return embed_records(
        records, source, on_error=on_error, errors=errors, record_kind="line", **options
    )


def read_smiles_csv(
    path: str | os.PathLike,
    *,
    smiles_column: str = "smiles",
    name_column: str = "name",
    label_units: Mapping[str, str] | None = None,
    on_error: str = "raise",
    errors: list | None = None,
    **options,
) -> list[ase.Atoms]:
    """A ``.csv`` with a ``smiles`` column (case-insensitive); other numeric columns become
    labels in ``info`` (converted with ``label_units``: column -> unit name, optional).
    ``record`` is the 1-based line number (the header is line 1)."""
    import pandas as pd

    source = str(path)
    try:
        df = pd.read_csv(path, dtype={smiles_column: str})
    except pd.errors.EmptyDataError:
        raise InputError("file is empty", source) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"unreadable CSV: {err}", source) from None
    cols = {c.lower(): c for c in df.columns}
    scol = cols.get(smiles_column.lower())
    if scol is None:
        raise InputError(f"no {smiles_column!r} column (columns: {list(df.columns)})", source)
    ncol = cols.get(name_column.lower())
    label_cols = [c for c in df.columns if c not in (scol, ncol) and df[c].dtype.kind in "if"]
    records = []
    for i, row in enumerate(df.itertuples(index=False)):
        values = dict(zip(df.columns, row, strict=True))
        labels = {c: float(values[c]) for c in label_cols if is_number(values[c])}
        labels = {k: v for k, v in labels.items() if not np.isnan(v)}
        smi = values[scol]
        smi = "" if not isinstance(smi, str) else smi.strip()
        name = None if ncol is None or pd.isna(values[ncol]) else str(values[ncol])
        records.append((i + 2, smi, name, convert_labels(labels, label_units)))
    if not records:
        raise InputError("file holds no SMILES", source)
    return embed_records(
        records, source, on_error=on_error, errors=errors, record_kind="line", **options
    )
