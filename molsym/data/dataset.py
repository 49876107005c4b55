"""In-memory graph datasets with an on-disk cache of processed graphs.

A file is read once (``molsym.data.readers.read_file``), every structure becomes a graph through
:func:`molsym.data.graph.atoms_to_graph`, and the graphs are written to a cache file keyed by a
hash of the file's bytes, its path, the cutoff, the dtype, the reader options and
:data:`GRAPH_FORMAT_VERSION`. A rerun with the same inputs loads the cache and never calls the
reader; a changed file, cutoff, dtype or option gives a new key and reprocesses.

Cache files are data only (:mod:`molsym.data.store`): a dict of plain tensors (each field
concatenated over graphs, with per-graph slices) and lists of strings, loaded with
``torch.load(..., weights_only=True)`` and written atomically (:func:`molsym.atomic.atomic_path`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np
import torch
from torch_geometric.data import Data

from molsym import keys
from molsym.atomic import atomic_path
from molsym.data.cache import default_cache_dir
from molsym.data.graph import atoms_to_graph
from molsym.data.readers import (
    is_named_source,
    named_source_files,
    read_file,
    resolve_named_source,
)
from molsym.data.store import StoreLayout, concat_stores, graphs_to_store
from molsym.dtypes import resolve_dtype
from molsym.errors import ConfigError, InputError

#: Bump when the content or layout of cached graphs changes (invalidates every cache file).
GRAPH_FORMAT_VERSION = 2  # 2: pair_index

def read_structures(
    path: str | Path,
    format: str | None = None,
    on_error: str = "raise",
    errors: list | None = None,
    **options: Any,
) -> list[ase.Atoms]:
    """Read every structure of ``path`` with molsym's readers (labels in internal units)."""
    return read_file(path, format=format, on_error=on_error, errors=errors, **options)


# --- cache keys ------------------------------------------------------------------------------


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_digest(path: str | Path, format: str | None = None) -> str:
    """Digest of a data source: a file's bytes; for a folder (or a reader's named source, such
    as QM9's ``"qm9pack"``) the names, sizes and modification times of its files."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif is_named_source(path, format):
        files = named_source_files(path, format)
    else:
        raise ConfigError(f"data file not found: {path}")
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def atoms_digest(atoms_list: Sequence[ase.Atoms]) -> str:
    """SHA-256 of the numbers, positions, cell, pbc, labels and ids of a list of structures."""
    h = hashlib.sha256()
    for atoms in atoms_list:
        for arr in (atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc):
            h.update(np.ascontiguousarray(arr).tobytes())
        for name in sorted(atoms.arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(atoms.arrays[name]).tobytes())
        h.update(json.dumps(atoms.info, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def cache_key(content_digest: str, cutoff: float, dtype: torch.dtype, options: dict) -> str:
    """Hex key of one processed dataset: content, cutoff, dtype, reader options, format version."""
    payload = {
        "content": content_digest,
        "cutoff": float(cutoff),
        "dtype": str(dtype),
        "options": options,
        "graph_format": GRAPH_FORMAT_VERSION,
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# --- dataset ----------------------------------------------------------------------------------


class GraphDataset(torch.utils.data.Dataset):
    """Graphs held in memory as concatenated tensors (a store); ``ds[i]`` is a PyG ``Data``
    whose tensors are views into the store (built on first access, then kept).

    Attributes:
        store: the packed graphs (see :func:`graphs_to_store`).
        indices: store indices of this dataset's graphs (a subset shares its parent's store).
        errors: messages of records skipped with ``on_error="skip"``.
        cache_path: cache file used (None when caching was off).
        from_cache: True when the graphs were loaded from the cache, not processed.
    """

    def __init__(
        self,
        store: dict,
        errors: Sequence[str] = (),
        indices: Sequence[int] | None = None,
        _layout: StoreLayout | None = None,
    ):
        self.store = store
        self._layout = _layout or StoreLayout(store)
        n = self._layout.num_graphs
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]
        self.errors = list(errors)
        self.cache_path: Path | None = None
        self.from_cache = False
        self._memo: dict[int, Data] = {}

    @classmethod
    def from_graphs(cls, graphs: Sequence[Data], errors: Sequence[str] = ()) -> GraphDataset:
        """A dataset of already built graphs (they are packed into a store)."""
        return cls(graphs_to_store(graphs), errors)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> Data:
        k = self.indices[idx]
        graph = self._memo.get(k)
        if graph is None:
            graph = self._memo[k] = self._layout.graph(k)
        return graph

    def __iter__(self) -> Iterator[Data]:
        return (self[i] for i in range(len(self)))

    @property
    def graphs(self) -> list[Data]:
        """All graphs as a list."""
        return list(self)

    def subset(self, indices: Sequence[int]) -> GraphDataset:
        """The graphs at positions ``indices`` of this dataset (shares the store, no copy)."""
        return GraphDataset(self.store, (), [self.indices[int(i)] for i in indices], self._layout)

    def first_missing(self, name: str) -> int | None:
        """Position of the first graph without field ``name``, or None if all have it."""
        for pos, k in enumerate(self.indices):
            if not self._layout.has(name, k):
                return pos
        return None

    def nonfinite_labels(self, names: Iterable[str]) -> list[tuple[int, str]]:
        """``(position, name)`` of every graph whose field ``name`` holds a NaN or an inf,
        sorted by position (one vectorised pass over the store per field)."""
        bad: list[tuple[int, str]] = []
        for name in names:
            entry = self.store["fields"].get(name)
            values = None if entry is None else entry.get("values")
            if values is None or not values.is_floating_point():
                continue
            dim = int(entry["dim"])
            rows = (~torch.isfinite(values)).movedim(dim, 0).reshape(values.shape[dim], -1)
            items = rows.any(dim=1).nonzero().flatten()
            if items.numel() == 0:
                continue
            graphs = set((torch.searchsorted(entry["slices"], items, right=True) - 1).tolist())
            bad.extend((pos, name) for pos, k in enumerate(self.indices) if k in graphs)
        return sorted(bad)

    def record_of(self, pos: int) -> str:
        """Where graph ``pos`` came from, for messages: the record of its ``id``
        (``"<source>:<record>"``), else its position."""
        entry = self.store["fields"].get("id")
        ident = entry["strings"][self.indices[pos]] if entry and "strings" in entry else None
        return str(ident).rsplit(":", 1)[-1] if ident else str(pos)

    def elements_bound(self) -> set[int]:
        """Atomic numbers of the whole store (a superset of this subset's)."""
        z = self.store["fields"][keys.ATOMIC_NUMBERS]["values"]
        return {int(e) for e in torch.unique(z).tolist()}

    def field_names(self) -> set[str]:
        """Fields of the store (some graphs may lack some; see :meth:`first_missing`)."""
        return set(self.store["fields"])

    def select_fields(self, names: Iterable[str]) -> GraphDataset:
        """The same graphs with only the fields ``names`` (a new store sharing tensors)."""
        wanted = set(names)
        store = {"num_graphs": self.store["num_graphs"],
                 "fields": {k: v for k, v in self.store["fields"].items() if k in wanted}}
        ds = GraphDataset(store, self.errors, self.indices)
        ds.cache_path, ds.from_cache = self.cache_path, self.from_cache
        return ds

    @classmethod
    def from_atoms(
        cls,
        atoms_list: Sequence[ase.Atoms],
        cutoff: float,
        *,
        dtype: str | torch.dtype = "float32",
        on_error: str = "raise",
        cache_dir: str | Path | None = None,
        use_cache: bool = False,
        num_workers: int | None = None,
    ) -> GraphDataset:
        """Graphs of in-memory structures; cached (keyed by a hash of the atoms) if asked."""
        torch_dtype = resolve_dtype(dtype)

        def build() -> tuple[dict, list[str]]:
            return build_store(atoms_list, cutoff, torch_dtype, on_error, num_workers)

        if not use_cache:
            return cls._built(build, "atoms list", None)
        key = cache_key(atoms_digest(atoms_list), cutoff, torch_dtype, {"on_error": on_error})
        cache_file = Path(cache_dir or default_cache_dir()) / f"atoms-{key[:20]}.pt"
        return cls._cached(cache_file, build, "atoms list")

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        cutoff: float,
        *,
        format: str | None = None,
        dtype: str | torch.dtype = "float32",
        reader_options: dict | None = None,
        on_error: str = "raise",
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        num_workers: int | None = None,
    ) -> GraphDataset:
        """Read ``path`` and build its graphs (over ``num_workers`` processes, default: the
        cores), or load them from the cache.

        Raises:
            ConfigError: the file does not exist.
            InputError: a bad record (with ``on_error="raise"``).
        """
        torch_dtype = resolve_dtype(dtype)
        path = Path(resolve_named_source(path, format, cache_dir)).expanduser()
        if not path.exists() and not is_named_source(path, format):
            raise ConfigError(f"data file not found: {path}")
        options = dict(reader_options or {})

        def build() -> tuple[dict, list[str]]:
            errors: list = []
            atoms_list = read_structures(path, format, on_error, errors, **options)
            store, graph_errors = build_store(atoms_list, cutoff, torch_dtype, on_error,
                                              num_workers)
            return store, [str(e) for e in errors] + graph_errors

        if not use_cache:
            return cls._built(build, str(path), None)
        opts = {"format": format, "on_error": on_error, "reader": options,
                "path": str(path.resolve()) if path.exists() else str(path)}
        key = cache_key(source_digest(path, format), cutoff, torch_dtype, opts)
        cache_file = Path(cache_dir or default_cache_dir()) / f"{path.stem}-{key[:20]}.pt"
        return cls._cached(cache_file, build, str(path))

    @classmethod
    def _built(cls, build: Callable, source: str, cache_file: Path | None) -> GraphDataset:
        store, errors = build()
        if store["num_graphs"] == 0:
            raise InputError("no usable structure", source)
        if cache_file is not None:
            _save_atomic({**store, "errors": list(errors),
                          "graph_format": GRAPH_FORMAT_VERSION}, cache_file)
        ds = cls(store, errors)
        ds.cache_path = cache_file
        return ds

    @classmethod
    def _cached(cls, cache_file: Path, build: Callable, source: str) -> GraphDataset:
        if cache_file.is_file():
            try:
                store = torch.load(cache_file, weights_only=True)
                ds = cls(store, store.get("errors", []))
                ds.cache_path, ds.from_cache = cache_file, True
                return ds
            except Exception:  # unreadable/partial cache: rebuild it below
                pass
        return cls._built(build, source, cache_file)


# --- building, in parallel when it pays --------------------------------------------------

#: Below this many structures graphs are built in the calling process.
PARALLEL_MIN_STRUCTURES = 256
_FORK_JOB: tuple | None = None  # (atoms_list, cutoff, dtype) inherited by forked workers


def build_store(
    atoms_list: Sequence[ase.Atoms],
    cutoff: float,
    dtype: torch.dtype,
    on_error: str = "raise",
    num_workers: int | None = None,
) -> tuple[dict, list[str]]:
    """``atoms_to_graph`` on every structure, packed into a store. Bad structures raise
    :class:`InputError` or (``on_error="skip"``) are dropped and their messages returned.
    Large lists are split over ``num_workers`` forked processes (default: usable cores)."""
    global _FORK_JOB
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    workers = _usable_cores() if num_workers is None else max(1, int(num_workers))
    n = len(atoms_list)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensor ops: intra-op threads only cost time here
    try:
        if workers == 1 or n < PARALLEL_MIN_STRUCTURES or "fork" not in mp.get_all_start_methods():
            results = [_build_chunk((0, n), (atoms_list, cutoff, dtype))]
        else:
            # one equal share per process; this process builds the first share itself
            bounds = np.linspace(0, n, workers + 1).astype(int)
            chunks = list(zip(bounds[:-1], bounds[1:], strict=True))
            _FORK_JOB = (atoms_list, cutoff, dtype)
            with mp.get_context("fork").Pool(workers - 1) as pool:
                pending = pool.map_async(_build_chunk, chunks[1:])
                results = [_build_chunk(chunks[0], _FORK_JOB), *pending.get()]
    finally:
        _FORK_JOB = None
        torch.set_num_threads(threads)
    failures = [f for _, chunk_failures in results for f in chunk_failures]
    if failures and on_error == "raise":
        raise InputError(*failures[0])
    torch.set_num_threads(1)
    try:
        store = concat_stores([s for s, _ in results if s["num_graphs"]] or [results[0][0]])
    finally:
        torch.set_num_threads(threads)
    return store, [str(InputError(*f)) for f in failures]


def _build_chunk(bounds: tuple[int, int], job: tuple | None = None) -> tuple[dict, list[tuple]]:
    atoms_list, cutoff, dtype = job if job is not None else _FORK_JOB
    graphs, failures = [], []
    for idx in range(int(bounds[0]), int(bounds[1])):
        atoms = atoms_list[idx]
        try:
            graphs.append(atoms_to_graph(atoms, cutoff, dtype=dtype,
                                         record=atoms.info.get("record", idx)))
        except InputError as err:
            failures.append((err.reason, err.source, err.record, err.record_kind))
    store = graphs_to_store(graphs) if graphs else {"num_graphs": 0, "fields": {}}
    return store, failures


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
