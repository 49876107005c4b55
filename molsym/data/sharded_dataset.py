"""Graphs read lazily from a sharded on-disk store, and a sampler that gives each DDP rank
its own shards.

:class:`ShardedDataset` has the interface :class:`molsym.data.datamodule.MolDataModule`
uses of :class:`molsym.data.dataset.GraphDataset` (subsets, label selection, presence and
finiteness checks), answered from the manifest where possible, so nothing but the records a
loader asks for is read. Memory stays that of the index lists, whatever the store's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from torch_geometric.data import Data

from molsym import keys
from molsym.data.shards import ShardReader
from molsym.errors import ConfigError


class ShardedDataset(torch.utils.data.Dataset):
    """Graphs of a store folder, decoded on access (never kept).

    Attributes:
        reader: the store's :class:`molsym.data.shards.ShardReader`.
        indices: store record indices of this dataset's graphs.
        fields: field names returned (None: all).
        errors: messages of records skipped at conversion.
    """

    def __init__(self, reader: ShardReader, indices: Sequence[int] | None = None,
                 fields: frozenset[str] | None = None):
        self.reader = reader
        self.indices = np.arange(len(reader)) if indices is None else np.asarray(indices, int)
        self.fields = fields
        self.errors = [e for s in reader.shards for e in s.get("errors", [])]
        self.cache_path: Path | None = None
        self.from_cache = True

    @classmethod
    def open(cls, folder: str | Path, cutoff: float | None = None,
             dtype: str | torch.dtype | None = None) -> ShardedDataset:
        """The store at ``folder``; ``cutoff`` and ``dtype``, when given, must be the ones it
        was converted with (graphs hold edges of that cutoff).

        Raises:
            ConfigError: not a finished store, or another cutoff or dtype.
        """
        reader = ShardReader(folder)
        have = reader.manifest
        if cutoff is not None and not math.isclose(float(cutoff), float(have["cutoff"])):
            raise ConfigError(f"{folder}: converted with cutoff {have['cutoff']} Angstrom, the "
                              f"run asks for {cutoff}; set cutoff={have['cutoff']} or convert "
                              "again with --cutoff")
        if dtype is not None and str(dtype).replace("torch.", "") != have["dtype"]:
            raise ConfigError(f"{folder}: converted as {have['dtype']}, the run asks for "
                              f"{dtype}; set dtype={have['dtype']} or convert again with --dtype")
        return cls(reader)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> Data:
        return self.reader.get(int(self.indices[idx]), self.fields)

    def __iter__(self) -> Iterator[Data]:
        return (self[i] for i in range(len(self)))

    def in_storage_order(self) -> Iterator[Data]:
        """Every graph once, in the order of the shards (sequential reads), each shard
        unmapped after it: a pass over a store larger than memory (statistics)."""
        order = np.sort(self.indices)
        shards = np.searchsorted(np.asarray(self.reader.starts), order, side="right") - 1
        for k, index in enumerate(order.tolist()):
            yield self.reader.get(index, self.fields)
            if k + 1 == len(order) or shards[k + 1] != shards[k]:
                self.reader.release(int(shards[k]))

    def subset(self, indices: Sequence[int]) -> ShardedDataset:
        """The graphs at positions ``indices`` of this dataset."""
        ds = ShardedDataset(self.reader, self.indices[np.asarray(indices, int)], self.fields)
        ds.errors = []
        return ds

    def select_fields(self, names: Iterable[str]) -> ShardedDataset:
        """The same graphs with only the fields ``names``."""
        ds = ShardedDataset(self.reader, self.indices, frozenset(names))
        ds.errors = self.errors
        return ds

    def field_names(self) -> set[str]:
        names = {n for s in self.reader.shards for n in s["fields"]}
        return names if self.fields is None else names & self.fields

    def elements_bound(self) -> set[int]:
        """Atomic numbers of the shards that hold this dataset's graphs (from the manifest;
        a superset of this dataset's)."""
        shards = set(np.unique(self.shard_of_positions()).tolist())
        return {int(z) for k in shards for z in self.reader.shards[k]["elements"]}

    def first_missing(self, name: str) -> int | None:
        """Position of the first graph without field ``name``, or None if all have it (from
        the manifest; records are read only when some shard lacks it)."""
        shards = self.reader.shards
        if all(s["fields"].get(name, 0) == s["count"] for s in shards):
            return None
        lacking = {k for k, s in enumerate(shards) if s["fields"].get(name, 0) < s["count"]}
        for pos, index in enumerate(self.indices):
            shard, _ = self.reader.locate(int(index))
            if shard in lacking and name not in self.reader.get(int(index)):
                return pos
        return None

    def nonfinite_labels(self, names: Iterable[str]) -> list[tuple[int, str]]:
        """``(position, name)`` of every graph whose field ``name`` holds a NaN or an inf
        (recorded per shard at conversion)."""
        bad_records: dict[int, list[str]] = {}
        for entry, start in zip(self.reader.shards, self.reader.starts[:-1], strict=True):
            for name in names:
                for local in entry.get("nonfinite", {}).get(name, []):
                    bad_records.setdefault(start + int(local), []).append(name)
        if not bad_records:
            return []
        return sorted((pos, name) for pos, index in enumerate(self.indices)
                      for name in bad_records.get(int(index), []))

    def record_of(self, pos: int) -> str:
        """The record of graph ``pos``'s ``id`` (``"<source>:<record>"``), for messages."""
        ident = self.reader.get(int(self.indices[pos]), {keys.ID}).get(keys.ID)
        return str(ident).rsplit(":", 1)[-1] if ident else str(pos)

    def shard_of_positions(self) -> np.ndarray:
        """(len,) the shard number of each graph."""
        starts = np.asarray(self.reader.starts)
        return np.searchsorted(starts, self.indices, side="right") - 1


class ShardDistributedSampler(DistributedSampler):
    """Each DDP rank reads whole shards, disjoint from the other ranks'.

    Every epoch the shards are put in a random order (seed + epoch, the same on every rank),
    the graphs of each shard in a random order within it, and the concatenation is cut
    into ``num_replicas`` contiguous equal parts (padded by repeating its start, as
    :class:`torch.utils.data.DistributedSampler` does, unless ``drop_last``): rank r takes
    part r, shuffled. A rank so touches about 1/num_replicas of the shards (plus the two it
    shares at the cut points), and no graph goes to two ranks (apart from the padding).
    """

    def __init__(self, dataset: ShardedDataset, num_replicas: int | None = None,
                 rank: int | None = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        if not isinstance(dataset, ShardedDataset):
            raise ConfigError("ShardDistributedSampler needs a ShardedDataset")
        super().__init__(dataset, num_replicas, rank, shuffle, seed, drop_last)
        shards = dataset.shard_of_positions()
        by_shard = np.argsort(shards, kind="stable")
        cuts = np.flatnonzero(np.diff(shards[by_shard])) + 1
        self._groups = np.split(by_shard, cuts) if len(shards) else []  # positions per shard

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = self._groups
        if self.shuffle:
            groups = [groups[k] for k in rng.permutation(len(groups))]
        order = [rng.permutation(g) if self.shuffle else g for g in groups]
        flat = np.concatenate(order) if order else np.zeros(0, int)
        if self.drop_last:
            flat = flat[:self.total_size]
        elif len(flat) < self.total_size:
            flat = np.resize(flat, self.total_size)  # repeats from the start
        part = flat[self.rank * self.num_samples:(self.rank + 1) * self.num_samples]
        if self.shuffle:
            part = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(part)
        return iter(part.tolist())
