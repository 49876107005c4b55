"""In-memory graph datasets with an on-disk cache of processed graphs.

A file is read once (``molsym.data.readers.read_file``), every structure becomes a graph through
:func:`molsym.data.graph.atoms_to_graph`, and the graphs are written to a cache file keyed by a
hash of the file's bytes, its path, the cutoff, the dtype, the reader options and
:data:`GRAPH_FORMAT_VERSION`. A rerun with the same inputs loads the cache and never calls the
reader; a changed file, cutoff, dtype or option gives a new key and reprocesses.

Cache files are data only: a dict of plain tensors (each field concatenated over graphs, with
per-graph slices) and lists of strings, loaded with ``torch.load(..., weights_only=True)`` and
written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np
import torch
from torch_geometric.data import Data

from molsym import keys
from molsym.data.graph import atoms_to_graph
from molsym.errors import ConfigError, InputError

#: Bump when the content or layout of cached graphs changes (invalidates every cache file).
GRAPH_FORMAT_VERSION = 1

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or a torch dtype) -> torch dtype; anything else is a
    :class:`ConfigError`."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
        return _DTYPES[dtype.replace("torch.", "")]
    raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def default_cache_dir() -> Path:
    """``$MOLSYM_CACHE_DIR`` if set, else ``~/.cache/molsym``."""
    env = os.environ.get("MOLSYM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "molsym"


def read_structures(
    path: str | Path,
    format: str | None = None,
    on_error: str = "raise",
    errors: list | None = None,
    **options: Any,
) -> list[ase.Atoms]:
    """Read every structure of ``path`` with molsym's readers (labels in internal units)."""
    try:
        from molsym.data.readers import read_file
    except ImportError:  # readers not in this checkout yet: plain ASE I/O
        return _read_with_ase(path, format)
    return read_file(path, format=format, on_error=on_error, errors=errors, **options)


def _read_with_ase(path: str | Path, format: str | None) -> list[ase.Atoms]:
    import ase.io

    out = []
    for idx, atoms in enumerate(ase.io.read(path, index=":", format=format)):
        calc = atoms.calc
        if calc is not None:
            for name, value in calc.results.items():
                if name == keys.FORCES:
                    atoms.arrays[name] = np.asarray(value)
                else:
                    atoms.info[name] = value
            atoms.calc = None
        atoms.info.update(source=str(path), record=idx, id=f"{path}:{idx}")
        out.append(atoms)
    return out


# --- cache keys ------------------------------------------------------------------------------


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_digest(path: str | Path, format: str | None = None) -> str:
    """Digest of a data source: a file's bytes; for a folder (or QM9's ``"qm9pack"``) the
    names, sizes and modification times of its files."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif format == "qm9" and str(path) == "qm9pack":
        from molsym.data.readers.qm9 import qm9pack_csvs

        files = list(qm9pack_csvs())
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


# --- graphs <-> plain tensors ----------------------------------------------------------------


def graphs_to_store(graphs: Sequence[Data]) -> dict:
    """Pack graphs into plain tensors: for every field its values concatenated along PyG's
    concatenation dimension, the per-graph ``slices`` (G+1,) and, when not every graph has the
    field, a ``present`` mask (G,). String fields (``id``) become lists of strings."""
    fields: dict[str, dict] = {}
    names = sorted({k for g in graphs for k in g.keys() if k != "num_nodes"})
    for name in names:
        present = [name in g for g in graphs]
        values = [g[name] for g in graphs if name in g]
        if isinstance(values[0], str):
            fields[name] = {"strings": [g[name] if name in g else None for g in graphs]}
        else:
            dim = graphs[present.index(True)].__cat_dim__(name, values[0])
            dim = dim % values[0].dim()
            sizes = [g[name].shape[dim] if p else 0 for g, p in zip(graphs, present, strict=True)]
            entry = {
                "values": torch.cat(values, dim=dim),
                "dim": dim,
                "slices": torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.long),
            }
            if not all(present):
                entry["present"] = torch.tensor(present)
            fields[name] = entry
    return {"num_graphs": len(graphs), "fields": fields}


def store_to_graphs(store: dict) -> list[Data]:
    """Inverse of :func:`graphs_to_store` (tensors are views into the concatenated arrays)."""
    n = int(store["num_graphs"])
    per_graph: list[dict] = [{} for _ in range(n)]
    for name, entry in store["fields"].items():
        if "strings" in entry:
            for i, s in enumerate(entry["strings"]):
                if s is not None:
                    per_graph[i][name] = s
            continue
        values, dim, sl = entry["values"], int(entry["dim"]), entry["slices"].tolist()
        present = entry.get("present")
        for i in range(n):
            if present is None or bool(present[i]):
                per_graph[i][name] = values.narrow(dim, sl[i], sl[i + 1] - sl[i])
    return [Data(num_nodes=int(d[keys.ATOMIC_NUMBERS].shape[0]), **d) for d in per_graph]


def _save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- dataset ----------------------------------------------------------------------------------


class GraphDataset(torch.utils.data.Dataset):
    """A list of PyG graphs held in memory.

    Attributes:
        graphs: the graphs (``molsym.keys`` fields, internal units).
        errors: messages of records skipped with ``on_error="skip"``.
        cache_path: cache file used (None when caching was off).
        from_cache: True when the graphs were loaded from the cache, not processed.
    """

    def __init__(self, graphs: Sequence[Data], errors: Sequence[str] = ()):
        self.graphs = list(graphs)
        self.errors = list(errors)
        self.cache_path: Path | None = None
        self.from_cache = False

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, idx: int) -> Data:
        return self.graphs[idx]

    def subset(self, indices: Sequence[int]) -> GraphDataset:
        """A new dataset with the graphs at ``indices`` (same objects, no copy)."""
        return GraphDataset([self.graphs[int(i)] for i in indices])

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
    ) -> GraphDataset:
        """Graphs of in-memory structures; cached (keyed by a hash of the atoms) if asked."""
        torch_dtype = resolve_dtype(dtype)

        def build() -> tuple[list[Data], list[str]]:
            return _build_graphs(atoms_list, cutoff, torch_dtype, on_error)

        if not use_cache:
            graphs, errors = build()
            return cls(graphs, errors)
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
    ) -> GraphDataset:
        """Read ``path`` and build its graphs, or load them from the cache.

        Raises:
            ConfigError: the file does not exist.
            InputError: a bad record (with ``on_error="raise"``).
        """
        torch_dtype = resolve_dtype(dtype)
        path = Path(path).expanduser()
        if not path.exists() and not (format == "qm9" and str(path) == "qm9pack"):
            raise ConfigError(f"data file not found: {path}")
        options = dict(reader_options or {})

        def build() -> tuple[list[Data], list[str]]:
            errors: list = []
            atoms_list = read_structures(path, format, on_error, errors, **options)
            graphs, graph_errors = _build_graphs(atoms_list, cutoff, torch_dtype, on_error)
            return graphs, [str(e) for e in errors] + graph_errors

        if not use_cache:
            graphs, errors = build()
            return cls(graphs, errors)
        opts = {"format": format, "on_error": on_error, "reader": options,
                "path": str(path.resolve()) if path.exists() else str(path)}
        key = cache_key(source_digest(path, format), cutoff, torch_dtype, opts)
        cache_file = Path(cache_dir or default_cache_dir()) / f"{path.stem}-{key[:20]}.pt"
        return cls._cached(cache_file, build, str(path))

    @classmethod
    def _cached(cls, cache_file: Path, build: Callable, source: str) -> GraphDataset:
        if cache_file.is_file():
            try:
                store = torch.load(cache_file, weights_only=True)
                ds = cls(store_to_graphs(store), store.get("errors", []))
                ds.cache_path, ds.from_cache = cache_file, True
                return ds
            except Exception:  # unreadable/partial cache: rebuild it below
                pass
        graphs, errors = build()
        if not graphs:
            raise InputError("no usable structure", source)
        store = graphs_to_store(graphs)
        store["errors"] = list(errors)
        store["graph_format"] = GRAPH_FORMAT_VERSION
        _save_atomic(store, cache_file)
        ds = cls(graphs, errors)
        ds.cache_path = cache_file
        return ds


def _build_graphs(
    atoms_list: Sequence[ase.Atoms], cutoff: float, dtype: torch.dtype, on_error: str
) -> tuple[list[Data], list[str]]:
    """``atoms_to_graph`` on every structure; bad ones raise or (``on_error="skip"``) are
    dropped and their messages returned."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    graphs, errors = [], []
    for idx, atoms in enumerate(atoms_list):
        record = atoms.info.get("record", idx)
        try:
            graphs.append(atoms_to_graph(atoms, cutoff, dtype=dtype, record=record))
        except InputError as err:
            if on_error == "raise":
                raise
            errors.append(str(err))
    return graphs, errors
