"""Label structures with an oracle: worker processes, a per-structure timeout, and an
output folder that a killed run resumes without repeating finished work.

``out_dir/labels.extxyz``: one frame per labelled structure, appended and fsync-ed as soon as
it is complete (a torn last frame is cut on restart, see :mod:`molsym.oracles.store`). Each
frame carries ``energy`` (eV), ``forces`` (eV/Angstrom), ``total_charge`` (e),
``multiplicity``, ``oracle`` (name), ``oracle_config`` (JSON: ``_target_`` + arguments),
``label_key`` and ``structure_id`` (the input's ``info["id"]``), plus the input's string
info (``smiles``, ``name``); numeric input info (earlier labels) is not carried over. It reads
back with :func:`molsym.data.readers.read_file` as training data.

``out_dir/failures.jsonl``: one record per failed structure, with its reason (SCF not
converged, an exception, a worker crash, a timeout). A rerun with the same oracle config skips
finished and failed structures (``retry_failed=True`` tries failures again); structures are
matched by :func:`structure_key`, so identical structures are labelled once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from molsym.errors import ConfigError
from molsym.oracles.base import (
    Oracle,
    OracleError,
    as_oracle,
    element_error,
    unsupported_elements,
)
from molsym.oracles.pool import Task, run_tasks
from molsym.oracles.spin import charge_and_multiplicity
from molsym.oracles.store import LabelStore

log = logging.getLogger(__name__)

#: Stop early when the first this many results of a run all fail and nothing is labelled.
ABORT_AFTER = 8


@dataclasses.dataclass
class LabelReport:
    """What one :func:`label` call did (counts of structures)."""

    labelled: int  # new frames written by this call
    failed: int  # new failure records written by this call
    skipped: int  # already labelled or already failed in earlier runs (or duplicates)
    total_labelled: int  # frames in labels.extxyz after this call
    seconds: float  # wall clock of this call
    labels_path: str
    failures_path: str


def structure_key(atoms: Atoms, charge: int, multiplicity: int) -> str:
    """Stable key of a structure to label: a hash of atomic numbers, positions rounded to
    1e-6 Angstrom, cell and pbc when periodic, charge and multiplicity."""
    h = hashlib.sha1()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update((np.round(np.asarray(atoms.positions, dtype=np.float64), 6) + 0.0).tobytes())
    if atoms.pbc.any():
        h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
        h.update((np.round(np.asarray(atoms.cell[:], dtype=np.float64), 6) + 0.0).tobytes())
    h.update(f"{int(charge)},{int(multiplicity)}".encode())
    return "s" + h.hexdigest()[:20]  # a letter first: extxyz never reads it as a number


def _frame(atoms: Atoms, key: str, charge: int, mult: int, result, oracle: Oracle,
           config_json: str) -> Atoms:
    energy, forces = result
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                pbc=atoms.pbc)
    out.info.update({k: v for k, v in atoms.info.items()
                     if isinstance(v, str) and k not in ("id", "source", "record")})
    if "id" in atoms.info:
        out.info["structure_id"] = str(atoms.info["id"])
    out.info.update({
        "energy": float(energy), "total_charge": float(charge), "multiplicity": int(mult),
        "oracle": oracle.name, "oracle_config": config_json, "label_key": key,
    })
    out.arrays["forces"] = np.asarray(forces, dtype=np.float64)
    return out


def _failure(key: str, atoms: Atoms, reason: str, oracle: Oracle, config: dict,
             seconds: float = 0.0) -> dict:
    return {"key": key, "id": str(atoms.info.get("id", "")), "reason": reason,
            "oracle": oracle.name, "oracle_config": config, "seconds": round(seconds, 3)}


def label(
    structures: Sequence[Atoms],
    oracle: Oracle,
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    timeout_s: float | None = None,
    retry_failed: bool = False,
    on_unsupported: str = "raise",
    start_method: str = "spawn",
) -> LabelReport:
    """Label ``structures`` with ``oracle`` into ``out_dir`` (see the module doc).

    ``workers`` processes run the oracle (started with ``start_method``); ``timeout_s`` is the
    wall-clock limit per structure (None: none). Charge and multiplicity come from
    :func:`molsym.oracles.spin.charge_and_multiplicity`. Structures with elements the oracle
    does not cover raise :class:`ConfigError` before anything runs
    (``on_unsupported="raise"``) or are recorded as failures (``"skip"``). Raises
    :class:`OracleError` (one line) when nothing at all could be labelled.
    """
    if on_unsupported not in ("raise", "skip"):
        raise ValueError(f"on_unsupported must be 'raise' or 'skip', got {on_unsupported!r}")
    start = time.perf_counter()
    oracle = as_oracle(oracle)
    oracle.check()
    config = oracle.config()
    config_json = json.dumps(config, sort_keys=True, separators=(",", ":"))
    config = json.loads(config_json)  # what the frames will hold, compared on rerun
    with LabelStore(out_dir) as store:
        done, failed = store.recover(config)
        if retry_failed:
            failed = {}
        tasks, refused, skipped = _plan(structures, oracle, done, failed)
        bad = [(t, z) for t, z in refused if z]
        if bad and on_unsupported == "raise":
            missing = sorted({z for _, zs in bad for z in zs})
            first = str(bad[0][0][1].info.get("id", "a structure"))
            raise ConfigError(element_error(oracle, missing, len(bad), len(structures), first))
        reasons: list[str] = []
        labelled = failures = 0
        by_key = {t[0]: t for t in tasks}
        for (key, atoms, reason), zs in refused:
            if zs:
                reason = element_error(oracle, zs, 1, 1, str(atoms.info.get("id", key)))
            store.add_failure(_failure(key, atoms, reason, oracle, config))
            failures += 1
            reasons.append(reason)
        results = run_tasks(oracle, tasks, workers, timeout_s, start_method)
        try:
            for key, status, payload, seconds in results:
                _, atoms, charge, mult = by_key[key]
                if status == "ok":
                    store.add_frame(_frame(atoms, key, charge, mult, payload, oracle,
                                           config_json))
                    labelled += 1
                    continue
                store.add_failure(_failure(key, atoms, payload, oracle, config, seconds))
                log.warning("oracle %s failed on %s: %s", oracle.name,
                            atoms.info.get("id", key), payload)
                failures += 1
                reasons.append(payload)
                if not done and not labelled and failures >= ABORT_AFTER:
                    break
        finally:
            results.close()
        if not done and not labelled and failures:
            raise OracleError(_all_failed(oracle, failures, len(tasks) + len(refused), reasons))
        earlier = sum(k in failed for k in skipped)
        if not done and not labelled and earlier:
            raise OracleError(
                f"oracle {oracle.name}: nothing labelled, all {earlier} structures failed in "
                f"earlier runs (reasons in {store.failures_path}; retry_failed=True retries)"
            )
    return LabelReport(labelled, failures, len(skipped), len(done) + labelled,
                       time.perf_counter() - start, str(store.labels_path),
                       str(store.failures_path))


def _plan(structures, oracle: Oracle, done: set[str], failed: dict[str, dict]):
    """``(tasks to run, refused [((key, atoms, reason), unsupported Z)], skipped keys)``."""
    tasks: list[Task] = []
    refused: list[tuple[tuple[str, Atoms, str], list[int]]] = []
    seen: set[str] = set()
    skipped: list[str] = []
    for k, atoms in enumerate(structures):
        try:
            charge, mult = charge_and_multiplicity(atoms)
            reason = None
        except ValueError as err:
            charge, mult, reason = 0, 0, str(err)
        key = structure_key(atoms, charge, mult)
        if key in done or key in failed or key in seen:
            skipped.append(key)
            continue
        seen.add(key)
        if "id" not in atoms.info:
            atoms = atoms.copy()
            atoms.info["id"] = f"structure {k}"
        missing = unsupported_elements(oracle, atoms.numbers)
        if reason is None and not oracle.takes_charge and (charge, mult) != (0, 1):
            reason = (f"oracle {oracle.name} takes no charge or spin (charge {charge}, "
                      f"multiplicity {mult})")
        if reason is not None or missing:
            refused.append(((key, atoms, reason or ""), missing))
        else:
            tasks.append((key, atoms, charge, mult))
    return tasks, refused, skipped


def _all_failed(oracle: Oracle, failures: int, total: int, reasons: list[str]) -> str:
    first = "; ".join(list(dict.fromkeys(r.replace("\n", " ") for r in reasons))[:3])
    which = f"all {total}" if failures >= total else f"the first {failures} of {total}"
    return (f"oracle {oracle.name} failed on {which} structures, nothing labelled; "
            f"first reasons: {first}")
