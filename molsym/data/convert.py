"""``convert``: structure files (any format molsym reads) -> a sharded on-disk graph store.

Graphs are built as for training (:func:`molsym.data.dataset.build_store`, at the store's
cutoff and dtype) and written ``frames_per_shard`` to a shard (:mod:`molsym.data.shards`).
A killed conversion leaves its committed shards and at most one temporary file; the same
command resumes after the last committed shard (each sidecar records where in the inputs
its shard ended). ``manifest.json`` is written last, from the sidecars.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from molsym import keys
from molsym.atomic import write_text_atomic
from molsym.data.dataset import build_store, read_structures, resolve_dtype
from molsym.data.records import encode_graph
from molsym.data.shards import (
    MANIFEST,
    OPTIONS,
    STORE_FORMAT,
    STORE_VERSION,
    complete_shard,
    shard_name,
    write_shard,
)
from molsym.data.store import StoreLayout
from molsym.errors import ConfigError

log = logging.getLogger(__name__)


def convert(
    inputs: Sequence[str | Path],
    out: str | Path,
    cutoff: float = 5.0,
    *,
    dtype: str = "float32",
    format: str | None = None,
    frames_per_shard: int = 10_000,
    reader_options: dict | None = None,
    on_error: str = "raise",
    num_workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Convert ``inputs`` into the store ``out``; returns its manifest.

    Raises:
        ConfigError: an input is missing, ``out`` holds another conversion (without
            ``overwrite``), or a bad option.
        InputError: a bad record (with ``on_error="raise"``).
    """
    out = Path(out)
    torch_dtype = resolve_dtype(dtype)
    if int(frames_per_shard) < 1:
        raise ConfigError(f"frames_per_shard must be >= 1, got {frames_per_shard}")
    paths = [Path(p).expanduser() for p in inputs]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"input not found: {p}")
    options = {
        "inputs": [str(p.resolve()) for p in paths],
        "input_sizes": [p.stat().st_size for p in paths],
        "cutoff": float(cutoff), "dtype": str(torch_dtype).replace("torch.", ""),
        "format": format, "frames_per_shard": int(frames_per_shard),
        "reader_options": dict(reader_options or {}), "on_error": on_error,
        "format_version": STORE_VERSION,
    }
    _prepare(out, options, overwrite)
    if (out / MANIFEST).is_file():
        log.info("%s: already converted", out)
        return json.loads((out / MANIFEST).read_text())
    shards = _committed(out)
    start = tuple(shards[-1]["end"]) if shards else (0, 0)
    if shards:
        log.info("%s: resuming after %d committed shards", out, len(shards))
    pending, errors = [], []

    def commit(end: tuple[int, int]) -> None:
        entry = _summary(pending)
        entry.update(end=list(end), errors=list(errors))
        records = (encode_graph(g, torch_dtype) for g in pending)
        max_bytes = sum(4096 + sum(v.numel() * v.element_size() for v in g.to_dict().values()
                                   if isinstance(v, torch.Tensor)) for g in pending)
        shards.append(write_shard(out / shard_name(len(shards)), records, entry, max_bytes))
        log.info("%s: %d frames", shards[-1]["name"], shards[-1]["count"])
        pending.clear()
        errors.clear()

    for file_index in range(start[0], len(paths)):
        read_errors: list = []
        atoms_list = read_structures(paths[file_index], format, on_error, read_errors,
                                     **options["reader_options"])
        i = start[1] if file_index == start[0] else 0
        if i == 0:
            errors.extend(str(e) for e in read_errors)
        while i < len(atoms_list):
            chunk = atoms_list[i:i + int(frames_per_shard) - len(pending)]
            store, graph_errors = build_store(chunk, cutoff, torch_dtype, on_error, num_workers)
            layout = StoreLayout(store)
            pending.extend(layout.graph(k) for k in range(layout.num_graphs))
            errors.extend(graph_errors)
            i += len(chunk)
            if len(pending) == int(frames_per_shard):
                commit((file_index, i))
        del atoms_list
    if pending or not shards:
        if not pending:
            raise ConfigError(f"no usable structure in {', '.join(map(str, paths))}")
        commit((len(paths), 0))
    manifest = {
        "format": STORE_FORMAT, "version": STORE_VERSION, "backend": "lmdb",
        "cutoff": options["cutoff"], "dtype": options["dtype"],
        "num_frames": sum(int(s["count"]) for s in shards), "inputs": options["inputs"],
        "shards": shards,
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _prepare(out: Path, options: dict, overwrite: bool) -> None:
    """Create ``out`` with its options file, or check that it holds this conversion."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        saved = None
        if (out / OPTIONS).is_file():
            try:
                saved = json.loads((out / OPTIONS).read_text())
            except ValueError:
                saved = None
        if saved != options:
            if not overwrite:
                what = "another conversion" if saved is not None else "other files"
                raise ConfigError(f"output {out} holds {what}; choose a new -o folder or "
                                  "pass --overwrite to replace it")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".shard-*.tmp"):
        tmp.unlink()
    if not (out / OPTIONS).is_file():
        write_text_atomic(out / OPTIONS, json.dumps(options, indent=1))


def _committed(out: Path) -> list[dict]:
    """Entries of the committed shards 0, 1, ... up to the first that is not."""
    shards = []
    while (entry := complete_shard(out / shard_name(len(shards)))) is not None:
        shards.append(entry)
    return shards


def _summary(graphs: list) -> dict:
    """Per shard: how many graphs hold each field, the records whose float labels are not
    finite and the elements (so a reader checks presence, finiteness and elements without
    reading records)."""
    present: dict[str, int] = {}
    nonfinite: dict[str, list[int]] = {}
    elements: set[int] = set()
    for k, g in enumerate(graphs):
        elements.update(g[keys.ATOMIC_NUMBERS].unique().tolist())
        for name, value in g.to_dict().items():
            if name == "num_nodes":
                continue
            present[name] = present.get(name, 0) + 1
            if isinstance(value, torch.Tensor) and value.is_floating_point() \
                    and not bool(torch.isfinite(value).all()):
                nonfinite.setdefault(name, []).append(k)
    return {"fields": present, "nonfinite": nonfinite, "elements": sorted(elements)}
