"""``MolDataModule``: files -> cached graphs -> reproducible splits -> PyG DataLoaders.

A ``path`` (or ``test_path``) that is a store folder written by ``molsym convert`` is read
lazily from disk (:class:`molsym.data.sharded_dataset.ShardedDataset`); under DDP each rank
then reads its own shards (:class:`molsym.data.sharded_dataset.ShardDistributedSampler`).

The constructor arguments are the whole config (Hydra instantiates it with ``_target_``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from molsym import keys
from molsym.data.collate import collate_graphs
from molsym.data.dataset import GraphDataset
from molsym.data.sharded_dataset import ShardDistributedSampler, ShardedDataset
from molsym.data.shards import is_store
from molsym.data.splits import Splits, random_split
from molsym.data.statistics import (
    DatasetStatistics,
    compute_statistics,
    read_isolated_atom_energies,
)
from molsym.errors import ConfigError, InputError

log = logging.getLogger(__name__)


class MolDataModule(pl.LightningDataModule):
    """Data of one training run.

    Args:
        path: structure file (any format ``molsym.data.readers.read_file`` reads), or a
            store folder written by ``molsym convert`` (read lazily; its cutoff and dtype
            must be the run's).
        format: reader format; None infers it from the extension.
        test_path: separate test file (all of it is the test set), e.g. rMD17 ``test_01``.
        cutoff: neighbour cutoff (Angstrom).
        num_train, num_val, num_test: counts (int) or fractions (float) of ``path``; None
            takes what remains (see :func:`molsym.data.splits.random_split`).
        split_file: JSON with ``train``/``val``/``test`` index lists; overrides the sizes.
        seed: seed of the split and of the training-set shuffling.
        batch_size: training batch size; ``eval_batch_size`` (default: same) for the rest.
        num_workers: DataLoader worker processes.
        reader_options: keyword options for the reader (e.g. label keys, units).
        energy_key, forces_key: shortcuts merged into ``reader_options`` when not None.
        targets: labels to keep; every structure must have them (others are dropped). None
            keeps the labels that every structure has.
        isolated_atom_energies_path: single-atom frames whose energies replace the fitted
            per-element reference energies.
        cache_dir: cache folder (default ``$MOLSYM_CACHE_DIR`` or ``~/.cache/molsym``).
        use_cache: False reprocesses every time and writes no cache.
        dtype: ``"float32"`` or ``"float64"`` for positions and labels.
        on_error: ``"raise"`` on a bad record (also a frame with a NaN or inf label), or
            ``"skip"`` it (logged).
    """

    def __init__(
        self,
        path: str,
        format: str | None = None,
        test_path: str | None = None,
        cutoff: float = 5.0,
        num_train: int | float | None = None,
        num_val: int | float | None = 0.05,
        num_test: int | float | None = None,
        split_file: str | None = None,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        reader_options: dict | None = None,
        energy_key: str | None = None,
        forces_key: str | None = None,
        targets: Sequence[str] | None = None,
        isolated_atom_energies_path: str | None = None,
        cache_dir: str | None = None,
        use_cache: bool = True,
        dtype: str = "float32",
        on_error: str = "raise",
    ):
        super().__init__()
        self.path, self.format, self.test_path = path, format, test_path
        self.cutoff = float(cutoff)
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.split_file, self.seed = split_file, int(seed)
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.reader_options = _plain(dict(reader_options or {}))
        for name, value in (("energy_key", energy_key), ("forces_key", forces_key)):
            if value is not None:
                self.reader_options[name] = value
        self.targets = None if targets is None else [str(t) for t in targets]
        self.isolated_atom_energies_path = isolated_atom_energies_path
        self.cache_dir, self.use_cache = cache_dir, use_cache
        self.dtype, self.on_error = dtype, on_error
        self.splits: Splits | None = None
        self.datasets: dict[str, GraphDataset | ShardedDataset] = {}
        self._statistics: DatasetStatistics | None = None

    # --- loading ---------------------------------------------------------------------------
    def _load(self, path: str) -> GraphDataset | ShardedDataset:
        if is_store(path):
            ds = ShardedDataset.open(path, self.cutoff, self.dtype)
            for msg in ds.errors:
                log.warning("skipped at conversion: %s", msg)
            return ds
        ds = GraphDataset.from_file(
            path, self.cutoff, format=self.format, dtype=self.dtype,
            reader_options=self.reader_options, on_error=self.on_error,
            cache_dir=self.cache_dir, use_cache=self.use_cache,
        )
        for msg in ds.errors:
            log.warning("skipped: %s", msg)
        return ds

    def prepare_data(self) -> None:
        """Process the files into the cache (once, on one process); nothing without a cache
        (nor for a store folder: it is read in place)."""
        if not self.use_cache:
            return
        for p in (self.path, self.test_path):
            if p is not None and not is_store(p):
                self._load(p)

    def setup(self, stage: str | None = None) -> None:
        """Load graphs (from the cache when possible), filter labels and split. Idempotent."""
        if self.splits is not None:
            return
        full = self._load(self.path)
        test_full = self._load(self.test_path) if self.test_path is not None else None
        sources = [ds for ds in (full, test_full) if ds is not None]
        labels = self._select_labels(sources)
        keep = keys.STRUCTURE_KEYS | set(labels)
        full, test_full = (None if ds is None else ds.select_fields(keep)
                           for ds in (full, test_full))
        full = self._finite_labels(full, labels, self.path)
        if test_full is not None:
            test_full = self._finite_labels(test_full, labels, self.test_path)
        n_test_file = None if test_full is None else len(test_full)
        if self.split_file is not None:
            splits = Splits.load(self.split_file)
            if test_full is not None and not splits.test and splits.test_source == "path":
                splits.test, splits.test_source = list(range(len(test_full))), "test_path"
            splits.validate(len(full), n_test_file, where=str(self.split_file))
        else:
            try:
                splits = random_split(len(full), self.num_train, self.num_val, self.num_test,
                                      self.seed, test_file_size=n_test_file)
            except ConfigError as exc:
                raise ConfigError(f"{self.path} ({len(full)} structures): {exc}") from None
        test_base = test_full if splits.test_source == "test_path" else full
        self.datasets = {
            "train": full.subset(splits.train),
            "val": full.subset(splits.val),
            "test": test_base.subset(splits.test),
        }
        self.splits = splits
        test_from = self.test_path if splits.test_source == "test_path" else self.path
        log.info("data: %d train + %d val from %s, %d test from %s", len(splits.train),
                 len(splits.val), self.path, len(splits.test), test_from)
        if not splits.test:
            log.warning("no test set (num_test=0 and no test_path): the run reports no test "
                        "errors; set data.num_test (e.g. 0.05) or data.test_path")

    def _finite_labels(self, ds: GraphDataset, labels: list[str], path: str) -> GraphDataset:
        """``ds`` after the check that every label of every frame is finite: a NaN or inf
        raises :class:`InputError` naming the file and the frame (``on_error="raise"``) or
        drops the frame with a warning (``"skip"``)."""
        bad = ds.nonfinite_labels(labels)
        if not bad:
            return ds
        per_frame: dict[int, list[str]] = {}
        for pos, name in bad:
            per_frame.setdefault(pos, []).append(name)
        errors = [InputError(f"{' and '.join(names)} not finite", str(path),
                             ds.record_of(pos), "frame") for pos, names in per_frame.items()]
        if self.on_error != "skip":
            more = f" (and {len(errors) - 1} more frames)" if len(errors) > 1 else ""
            raise InputError(f"{errors[0].reason}{more}; fix the labels or set "
                             "data.on_error=skip to drop such frames", errors[0].source,
                             errors[0].record, "frame")
        for err in errors:
            log.warning("skipped: %s", err)
        keep = [pos for pos in range(len(ds)) if pos not in per_frame]
        if not keep:
            raise InputError("no frame with finite labels", str(path))
        return ds.subset(keep)

    def _select_labels(self, sources: list[GraphDataset]) -> list[str]:
        names = set.union(*(ds.field_names() for ds in sources)) - keys.STRUCTURE_KEYS
        common = {n for n in names if all(ds.first_missing(n) is None for ds in sources)}
        if self.targets is None:
            if names - common:
                log.warning("labels missing from some structures are dropped: %s",
                            sorted(names - common))
            return sorted(common)
        for target in self.targets:
            for ds in sources:
                pos = ds.first_missing(target)
                if pos is not None:
                    g = ds[pos]
                    where = g[keys.ID] if keys.ID in g else f"structure {pos}"
                    there = sorted(set(g.keys()) - keys.STRUCTURE_KEYS)
                    raise ConfigError(f"target {target!r} missing from {where} "
                                      f"(labels there: {there})")
        return list(self.targets)

    # --- loaders ---------------------------------------------------------------------------
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        self.setup()
        ds = self.datasets[name]
        batch_size = self.batch_size if name == "train" else self.eval_batch_size
        if isinstance(ds, ShardedDataset) and name == "train" and _world_size() > 1:
            # each rank its own shards; val/test stay whole (Lightning shards val itself,
            # the test split is evaluated once on rank 0)
            sampler = ShardDistributedSampler(ds, shuffle=shuffle, seed=self.seed)
            return DataLoader(ds, batch_size=batch_size, sampler=sampler,
                              num_workers=self.num_workers, collate_fn=collate_graphs,
                              persistent_workers=self.num_workers > 0)
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
            generator=generator, persistent_workers=self.num_workers > 0,
            collate_fn=collate_graphs,  # PyG's batch, with less CPU per step
        )

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """The loaders build CPU tensors: on the CPU there is nothing to move (Lightning's
        generic move walks every field of the batch, about 0.07 ms a step)."""
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split, in file order."""
        return self._loader("test", shuffle=False)

    # --- statistics and splits -------------------------------------------------------------
    def statistics(self) -> DatasetStatistics:
        """Statistics of the training split (computed once)."""
        if self._statistics is None:
            self.setup()
            iso = None
            if self.isolated_atom_energies_path is not None:
                iso = read_isolated_atom_energies(self.isolated_atom_energies_path)
            train = self.datasets["train"]
            if isinstance(train, ShardedDataset):  # one sequential pass, shard by shard
                train = train.in_storage_order()
            self._statistics = compute_statistics(train, iso)
        return self._statistics

    def save_splits(self, path: str | Path) -> None:
        """Write the split indices as JSON (usable later as ``split_file``)."""
        self.setup()
        assert self.splits is not None
        self.splits.save(path)



def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _plain(value):
    """Hydra's DictConfig/ListConfig (any mapping/sequence) -> plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
