"""Random-access read throughput of graph records: LMDB against HDF5 (the store's backend).

Writes the same graphs (EMT-labelled random molecules at the training cutoff, molsym's
record codec) three ways and reads them back in a random order:

- ``lmdb``: one key per record (what ``molsym convert`` writes);
- ``hdf5-blobs``: one variable-length uint8 dataset, one element per record;
- ``hdf5-columns``: per field one concatenated dataset plus slices (the in-memory store's
  layout on disk; a record is one slice read per field).

Each is read warm (pages in the page cache) and cold (the file's pages dropped with
``posix_fadvise(DONTNEED)`` first; no root needed). Prints records per second (bytes
only, and bytes + decode into a PyG graph), repeated ``--repeats`` times; the machine load
(``os.getloadavg``) goes next to each figure.

    python -m scripts.benchmarks.bench_store_backends --frames 20000 --reads 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import lmdb
import numpy as np
import torch

from molsym.data.graph import atoms_to_graph
from molsym.data.records import decode_graph, encode_graph
from molsym.data.store import graphs_to_store
from molsym.data.synthetic import rotated_frames

DTYPE = torch.float32


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_all(graphs, folder: Path) -> dict[str, Path]:
    records = [encode_graph(g, DTYPE) for g in graphs]
    paths = {"lmdb": folder / "g.lmdb", "hdf5-blobs": folder / "blobs.h5",
             "hdf5-columns": folder / "columns.h5"}
    env = lmdb.open(str(paths["lmdb"]), subdir=False, map_size=1 << 36, lock=False)
    with env.begin(write=True) as txn:
        for k, rec in enumerate(records):
            txn.put(k.to_bytes(8, "big"), rec)
    env.close()
    with h5py.File(paths["hdf5-blobs"], "w") as f:
        ds = f.create_dataset("records", (len(records),), dtype=h5py.vlen_dtype(np.uint8))
        for k, rec in enumerate(records):
            ds[k] = np.frombuffer(rec, np.uint8)
    store = graphs_to_store(graphs)
    with h5py.File(paths["hdf5-columns"], "w") as f:
        for name, entry in store["fields"].items():
            if "values" in entry:
                g = f.create_group(name)
                g["values"] = entry["values"].numpy()
                g["slices"] = entry["slices"].numpy()
                g.attrs["dim"] = int(entry["dim"])
    return paths


def read_lmdb(path: Path, order, decode: bool) -> None:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False)
    with env.begin(buffers=True) as txn:
        for k in order:
            rec = txn.get(int(k).to_bytes(8, "big"))
            if decode:
                decode_graph(rec, DTYPE)
            else:
                bytes(rec)
    env.close()


def read_blobs(path: Path, order, decode: bool) -> None:
    with h5py.File(path, "r") as f:
        ds = f["records"]
        for k in order:
            rec = ds[int(k)]
            if decode:
                decode_graph(rec.tobytes(), DTYPE)


def read_columns(path: Path, order, decode: bool) -> None:
    from torch_geometric.data import Data

    with h5py.File(path, "r") as f:
        cols = [(name, f[name]["values"], f[name]["slices"][:], int(f[name].attrs["dim"]))
                for name in f]
        for k in order:
            fields = {}
            for name, values, sl, dim in cols:
                index = [slice(None)] * values.ndim
                index[dim] = slice(int(sl[k]), int(sl[k + 1]))
                fields[name] = values[tuple(index)]
            if decode:
                Data(**{n: torch.from_numpy(v) for n, v in fields.items()})


READERS = {"lmdb": read_lmdb, "hdf5-blobs": read_blobs, "hdf5-columns": read_columns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    graphs = [atoms_to_graph(a, args.cutoff, dtype=DTYPE)
              for a in rotated_frames(args.frames, pool_size=500)]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_all(graphs, Path(tmp))
        sizes = {name: p.stat().st_size / len(graphs) for name, p in paths.items()}
        print(f"frames={args.frames} reads={args.reads} bytes/record: "
              + " ".join(f"{n}={s:.0f}" for n, s in sizes.items()))
        for repeat in range(args.repeats):
            for name, path in paths.items():
                for cache in ("warm", "cold"):
                    for decode in (False, True):
                        order = rng.integers(0, len(graphs), args.reads)
                        if cache == "cold":
                            drop_cache(path)
                        else:
                            READERS[name](path, order[:500], False)
                        t0 = time.perf_counter()
                        READERS[name](path, order, decode)
                        rate = args.reads / (time.perf_counter() - t0)
                        what = "bytes+decode" if decode else "bytes"
                        print(f"repeat={repeat} backend={name} cache={cache} read={what} "
                              f"records_per_s={rate:.0f} load1={os.getloadavg()[0]:.2f}",
                              flush=True)


if __name__ == "__main__":
    main()
