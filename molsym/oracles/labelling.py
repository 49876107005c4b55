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
import re
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

_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # info keys an extxyz comment can hold
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
    out.info.update({k: " ".join(v.split()) for k, v in atoms.info.items()  # one line each
                     if isinstance(v, str) and k not in ("id", "source", "record")
                     and _SAFE_KEY.fullmatch(k)})
    if "id" in atoms.info:
        out.info["structure_id"] = " ".join(str(atoms.info["id"]).split())
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


class _Run:
    """One :func:`label` call writing to its store: counts and first reasons."""

    def __init__(self, store: LabelStore, oracle: Oracle, config: dict, config_json: str):
        self.store, self.oracle = store, oracle
        self.config, self.config_json = config, config_json
        self.labelled = self.failed = 0
        self.reasons: list[str] = []

    def ok(self, task: Task, result) -> None:
        key, atoms, charge, mult = task
        self.store.add_frame(_frame(atoms, key, charge, mult, result, self.oracle,
                                    self.config_json))
        self.labelled += 1

    def fail(self, key: str, atoms: Atoms, reason: str, seconds: float = 0.0) -> None:
        self.store.add_failure(_failure(key, atoms, reason, self.oracle, self.config, seconds))
        log.warning("oracle %s failed on %s: %s", self.oracle.name,
                    atoms.info.get("id", key), reason)
        self.failed += 1
        self.reasons.append(reason)


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
    config_json = json.dumps(oracle.config(), sort_keys=True, separators=(",", ":"))
    config = json.loads(config_json)  # what the frames hold, compared on rerun
    with LabelStore(out_dir) as store:
        done, failed = store.recover(config)
        tasks, refused, skipped = _plan(structures, oracle, done, {} if retry_failed else failed)
        bad = [(atoms, zs) for (_, atoms, _), zs in refused if zs]
        if bad and on_unsupported == "raise":
            missing = sorted({z for _, zs in bad for z in zs})
            first = str(bad[0][0].info["id"])
            raise ConfigError(element_error(oracle, missing, len(bad), len(structures), first))
        run = _Run(store, oracle, config, config_json)
        for (key, atoms, reason), zs in refused:
            run.fail(key, atoms, element_error(oracle, zs, 1, 1, atoms.info["id"]) if zs
                     else reason)
        by_key = {t[0]: t for t in tasks}
        results = run_tasks(oracle, tasks, workers, timeout_s, start_method)
        try:
            for key, status, payload, seconds in results:
                if status == "ok":
                    run.ok(by_key[key], payload)
                    continue
                run.fail(key, by_key[key][1], payload, seconds)
                if not done and not run.labelled and run.failed >= ABORT_AFTER:
                    break
        finally:
            results.close()
        _check_something_labelled(run, done, len(tasks) + len(refused),
                                  sum(k in failed for k in skipped))
    return LabelReport(run.labelled, run.failed, len(skipped), len(done) + run.labelled,
                       time.perf_counter() - start, str(store.labels_path),
                       str(store.failures_path))


def _check_something_labelled(run: _Run, done: set[str], total: int, earlier: int) -> None:
    """OracleError (one line) when the folder holds no label at all after this run."""
    if done or run.labelled:
        return
    name = run.oracle.name
    if run.failed:
        first = "; ".join(list(dict.fromkeys(r.replace("\n", " ") for r in run.reasons))[:3])
        which = f"all {total}" if run.failed >= total else f"the first {run.failed} of {total}"
        raise OracleError(f"oracle {name} failed on {which} structures, nothing labelled; "
                          f"first reasons: {first}")
    if earlier:
        raise OracleError(
            f"oracle {name}: nothing labelled, all {earlier} structures failed in earlier runs "
            f"(reasons in {run.store.failures_path}; retry_failed=True retries)"
        )


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
