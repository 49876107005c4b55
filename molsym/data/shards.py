"""On-disk sharded graph stores: a folder of LMDB shards plus a manifest.

Layout of a store folder ``DIR`` (written by ``molsym convert``, :mod:`molsym.data.convert`)::

    DIR/convert.json          the conversion's options (written first; a resume checks them)
    DIR/shard-00000.lmdb      one LMDB file per shard: key = record index (8 bytes, big
    DIR/shard-00000.json      endian), value = one graph (:mod:`molsym.data.records`); its
    ...                       sidecar: count, bytes, fields present, non-finite labels
    DIR/manifest.json         written last, atomically: the store is complete

A shard is committed in this order: the LMDB file is written under a temporary name and
synced, its sidecar is written atomically, then the file is renamed to its final name. So
a final-named shard always has a sidecar that states its size, a killed conversion leaves at
most a temporary file, and without ``manifest.json`` no reader opens the folder.

LMDB rather than HDF5: on random access to graph-sized records LMDB returned 3-60x more
records per second than HDF5 (1.6-3.8x once each record is decoded into a graph;
``scripts/benchmarks/bench_store_backends.py``, docs/benchmarks.md), and a record is one
memory-mapped lookup with no library-level cache or lock to tune per worker process.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable
from pathlib import Path

import lmdb
from torch_geometric.data import Data

from molsym.atomic import write_text_atomic
from molsym.data.records import CorruptRecord, decode_graph
from molsym.dtypes import resolve_dtype
from molsym.errors import ConfigError, InputError

MANIFEST = "manifest.json"
OPTIONS = "convert.json"
STORE_FORMAT = "molsym-shards"
STORE_VERSION = 1


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.lmdb"


def sidecar_path(shard: Path) -> Path:
    return shard.with_suffix(".json")


def record_key(index: int) -> bytes:
    return int(index).to_bytes(8, "big")


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is a store folder (finished or not)."""
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / OPTIONS).is_file())


def write_shard(path: Path, records: Iterable[bytes], entry: dict, max_bytes: int) -> dict:
    """Commit one shard: ``records`` into ``path`` (an LMDB file of at most ``max_bytes``
    bytes of records) and ``entry`` (plus its ``count`` and ``bytes``) into the sidecar, in
    the order described in the module doc. An exception (or a kill) on the way leaves the
    temporary file only."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    map_size = 2 * int(max_bytes) + (64 << 20)  # values + LMDB's pages and tree
    env = lmdb.open(str(tmp), subdir=False, map_size=map_size, lock=False, meminit=False)
    count = 0
    try:
        with env.begin(write=True) as txn:
            for rec in records:
                txn.put(record_key(count), rec, append=True)
                count += 1
        env.sync(True)
    finally:
        env.close()
    entry = {**entry, "name": path.name, "count": count, "bytes": tmp.stat().st_size}
    write_text_atomic(sidecar_path(path), json.dumps(entry))
    os.replace(tmp, path)
    return entry


def complete_shard(path: Path) -> dict | None:
    """The sidecar entry of a committed shard, or None when ``path`` is missing or does not
    match its sidecar (an interrupted commit)."""
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        return None
    try:
        entry = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("bytes") == path.stat().st_size else None


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a finished store.

    Raises:
        ConfigError: not a store, or its conversion did not finish.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        if (folder / OPTIONS).is_file():
            raise ConfigError(f"{folder}: conversion unfinished (no {MANIFEST}); rerun the same "
                              "`molsym convert ... -o DIR` to resume it")
        raise ConfigError(f"{folder}: not a molsym store (no {MANIFEST}); write one with "
                          "`molsym convert INPUT... -o DIR`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as err:
        raise InputError(f"unreadable manifest: {err}", str(manifest_path)) from None
    if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
        raise InputError(f"not a {STORE_FORMAT} v{STORE_VERSION} manifest", str(manifest_path))
    return manifest


class ShardReader:
    """Random access to the records of a finished store; each process opens the LMDB files
    itself on first use (after a DataLoader fork), read-only and without locks.

    Args:
        folder: the store folder.
        check_sizes: compare every shard's size with the manifest when opening.

    Raises:
        ConfigError: not a finished store.
        InputError: a shard is missing or its size differs from the manifest's (names it).
    """

    def __init__(self, folder: str | Path, check_sizes: bool = True):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.shards = list(self.manifest["shards"])
        self.float_dtype = resolve_dtype(self.manifest["dtype"])
        self.starts = [0]
        for entry in self.shards:
            self.starts.append(self.starts[-1] + int(entry["count"]))
        if check_sizes:
            for entry in self.shards:
                path = self.folder / entry["name"]
                if not path.is_file():
                    raise InputError("shard missing (copy the whole store folder)", str(path))
                if path.stat().st_size != entry["bytes"]:
                    raise InputError(f"{path.stat().st_size} bytes, the manifest says "
                                     f"{entry['bytes']}: truncated or not this store's shard; "
                                     "copy it again or rerun molsym convert", str(path))

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, record number within the shard) of global record ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        shard = bisect.bisect_right(self.starts, index) - 1
        return shard, index - self.starts[shard]

    def _txn(self, shard: int) -> lmdb.Transaction:
        return _open_shard(self.folder / self.shards[shard]["name"])

    def release(self, shard: int) -> None:
        """Unmap shard ``shard`` in this process (its pages leave this process's resident
        memory; the next read maps it again)."""
        _close_shard(self.folder / self.shards[shard]["name"])

    def get(self, index: int, wanted=None) -> Data:
        """The graph of global record ``index`` (only the fields in ``wanted`` when given).

        Raises:
            InputError: the record is corrupt (names the shard file and the record).
        """
        shard, local = self.locate(index)
        path = self.folder / self.shards[shard]["name"]
        try:
            raw = self._txn(shard).get(record_key(local))
            if raw is None:
                raise CorruptRecord("record missing from its shard")
            return decode_graph(raw, self.float_dtype, wanted)
        except (CorruptRecord, lmdb.Error) as err:
            raise InputError(f"corrupt record ({err}); copy the shard again or rerun molsym "
                             "convert", str(path), local) from None


#: Shards open in this process: LMDB opens a file once per process, so every reader of a
#: store shares its handles. path -> (pid, environment, read transaction); an entry of
#: another pid was inherited over a fork (a DataLoader worker) and is reopened.
_OPEN: dict[str, tuple[int, lmdb.Environment, lmdb.Transaction]] = {}


def _open_shard(path: Path) -> lmdb.Transaction:
    """A read transaction on shard ``path``, shared in this process.

    Raises:
        InputError: LMDB cannot open the file (names it).
    """
    key = str(path)
    cached = _OPEN.get(key)
    if cached is not None:
        if cached[0] == os.getpid():
            return cached[2]
        _close_shard(path)
    try:
        env = lmdb.open(key, subdir=False, readonly=True, lock=False, readahead=False)
    except lmdb.Error as err:
        raise InputError(f"not a readable shard ({err}); copy it again or rerun molsym "
                         "convert", str(path)) from None
    txn = env.begin(buffers=True)
    _OPEN[key] = (os.getpid(), env, txn)
    return txn


def _close_shard(path: Path) -> None:
    cached = _OPEN.pop(str(path), None)
    if cached is not None:
        cached[1].close()  # also ends its transaction
