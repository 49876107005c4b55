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
from molsym.errors import InputError

DEFAULT_SEED = 42
_MAX_ITERS = 2000


def embed_smiles(
    smiles: str, num_conformers: int = 1, seed: int = DEFAULT_SEED, optimize: bool = True
) -> tuple[np.ndarray, list[np.ndarray], int] | str:
    """Embed one SMILES. Returns ``(atomic numbers (N,), [positions (N, 3) Angstrom per
    conformer], total formal charge)`` or, on failure, a string that says why."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return f"invalid SMILES {smiles!r}"
    heavy = [a.GetAtomicNum() for a in mol.GetAtoms()]
    mol = Chem.AddHs(mol)  # appends the new hydrogens after the SMILES's own atoms
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    cids = _embed(mol, params, num_conformers)
    if not cids:
        params.useRandomCoords = True
        cids = _embed(mol, params, num_conformers)
    if not cids:
        return f"RDKit could not embed {smiles!r} in 3D"
    if optimize:
        _optimize(mol, len(cids))
    z = np.ones(mol.GetNumAtoms(), dtype=np.int64)
    z[: len(heavy)] = heavy
    confs = [np.array(mol.GetConformer(c).GetPositions()) for c in cids]
    return z, confs, Chem.GetFormalCharge(mol)


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


def _embed_task(args: tuple) -> tuple[np.ndarray, list[np.ndarray], int] | str:
    return embed_smiles(*args)


def _run_embedding(tasks: list[tuple], num_workers: int) -> list:
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
) -> list[ase.Atoms]:
    """Embed ``(record, smiles, name, labels)`` tuples into tagged ``ase.Atoms``."""
    check_on_error(on_error, errors)
    if num_conformers < 1:
        raise ValueError("num_conformers must be >= 1")
    workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
    results = _run_embedding([(r[1], num_conformers, seed) for r in records], workers)
    out: list[ase.Atoms] = []
    for (record, smi, name, labels), res in zip(records, results, strict=True):
        if isinstance(res, str):
            handle(InputError(res, source, record, record_kind), on_error, errors)
            continue
        z, confs, charge = res
        for k, pos in enumerate(confs):
            atoms = ase.Atoms(numbers=z, positions=pos)
            atoms.info.update(labels)
            atoms.info["smiles"] = smi
            atoms.info["total_charge"] = float(charge)
            if name is not None:
                atoms.info["name"] = name
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
) -> list[ase.Atoms]:
    """3D structures from SMILES strings (record = 0-based position in the list).

    With ``num_conformers > 1`` each SMILES gives that many conformers, with ids
    ``"<source>:<record>:<conformer>"``. ``num_workers`` defaults to the number of cores.
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
        on_error=on_error, errors=errors,
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
