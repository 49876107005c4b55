"""Scale check of the on-disk store: peak memory and throughput of `molsym train` from a
store (`molsym convert`) against the in-memory path, at 10^4 and 10^5 frames.

For each size: EMT-labelled random molecules (``molsym.data.synthetic.rotated_frames``,
cheap) are written to extxyz and converted once; then `molsym train` runs the same short
training (``--batches`` training batches per epoch, two epochs, the small model) from the
file (graphs cached in memory) and from the store, ``--repeats`` times, alternating. The
second epoch's wall time (data loading, forward, backward, optimizer, a few validation
batches) gives frames per second. The training process's memory is sampled from
/proc every 0.05 s: peak RSS and its private (RssAnon) and file-backed (RssFile: the
mapped shards, page cache the kernel can reclaim) parts.

Graphs are built once per size, by `molsym convert`; the in-memory path's graph cache (what
``GraphDataset.from_file`` loads for the extxyz file, same key) is filled with the store's
graphs, which equal the file's (tests/data/test_shards.py), so that a loaded 2-core machine
does not build 10^5 graphs twice.

    python -m scripts.benchmarks.bench_store_scale --sizes 10000 100000 --repeats 2

``--replicate`` (for a machine too busy to build 10^5 graphs in time): sizes above the
smallest are made of copies of the smallest: its extxyz concatenated (the in-memory path)
and its shards copied under new names with a manifest listing them all (the store). The
records then repeat, which changes nothing that is measured here (memory, read throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import ase.io
import torch

from molsym.data.synthetic import rotated_frames

CUTOFF = 5.0  # train.yaml's


def sample_memory(pid: int, peaks: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        for field in ("VmRSS", "RssAnon", "RssFile"):
            m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
            if m:
                peaks[field] = max(peaks.get(field, 0), int(m.group(1)) / 1024)
        stop.wait(0.05)


def train_once(data: Path, run_dir: Path, batches: int, batch_size: int, cache: Path) -> dict:
    cmd = [sys.executable, "-m", "molsym.cli.main", "train", f"data.path={data}",
           "data.num_val=200", "data.num_test=0", f"data.batch_size={batch_size}",
           "model=small", "module.compile=false", "trainer.max_epochs=2",
           f"+trainer.limit_train_batches={batches}", "+trainer.limit_val_batches=4",
           "refit_energy_shift=false", "callbacks.progress_bar.refresh_rate=1000000",
           f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "MOLSYM_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    peaks: dict = {}
    stop = threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    sampler = threading.Thread(target=sample_memory, args=(proc.pid, peaks, stop))
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"molsym train failed ({proc.returncode}):\n{out[-3000:]}")
    epochs = [float(m.group(1)) for m in re.finditer(r"^epoch \d+/\d+\s+([\d.]+) s", out, re.M)]
    return {"wall_s": time.perf_counter() - start, "epoch_s": epochs[-1],
            "frames_per_s": batches * batch_size / epochs[-1],
            **{f"peak_{k}_MiB": round(v, 1) for k, v in peaks.items()}}


def fill_graph_cache(frames: Path, store: Path, cache: Path) -> None:
    """The graph cache ``molsym train data.path=frames`` looks for, from the store."""
    from molsym.atomic import atomic_path
    from molsym.data.dataset import GRAPH_FORMAT_VERSION, cache_key, source_digest
    from molsym.data.sharded_dataset import ShardedDataset
    from molsym.data.store import graphs_to_store

    options = {"format": None, "on_error": "raise", "reader": {},
               "path": str(frames.resolve())}
    key = cache_key(source_digest(frames), CUTOFF, torch.float32, options)
    target = cache / f"{frames.stem}-{key[:20]}.pt"
    if target.is_file():
        return
    packed = graphs_to_store(list(ShardedDataset.open(store).in_storage_order()))
    with atomic_path(target) as tmp:
        torch.save({**packed, "errors": [], "graph_format": GRAPH_FORMAT_VERSION}, tmp)


def replicate(base_frames: Path, base_store: Path, copies: int, size: int,
              work: Path) -> tuple[Path, Path]:
    """The ``copies``-fold set made of ``base_frames`` / ``base_store`` (see ``--replicate``)."""
    import shutil

    frames, store = work / f"frames-{size}-replicated.extxyz", work / f"store-{size}-replicated"
    if not frames.is_file():
        with open(frames, "wb") as out:
            for _ in range(copies):
                with open(base_frames, "rb") as src:
                    shutil.copyfileobj(src, out)
    if not (store / "manifest.json").is_file():
        store.mkdir(parents=True, exist_ok=True)
        manifest = json.loads((base_store / "manifest.json").read_text())
        shards = []
        for _ in range(copies):
            for entry in manifest["shards"]:
                name = f"shard-{len(shards):05d}.lmdb"
                shutil.copyfile(base_store / entry["name"], store / name)
                shards.append({**entry, "name": name})
        manifest.update(shards=shards, num_frames=manifest["num_frames"] * copies)
        (store / "manifest.json").write_text(json.dumps(manifest))
    return frames, store


def prepare(size: int, work: Path) -> tuple[Path, Path, float]:
    frames = work / f"frames-{size}.extxyz"
    store = work / f"store-{size}"
    if not frames.is_file():
        ase.io.write(frames, list(rotated_frames(size, pool_size=1000, seed=size)))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "molsym.cli.main", "convert", str(frames), "-o",
                    str(store), "--frames-per-shard", "10000", "--cutoff", str(CUTOFF)],
                   check=True,
                   capture_output=True)
    return frames, store, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--replicate", action="store_true",
                        help="larger sizes are copies of the smallest (see the docstring)")
    parser.add_argument("--order", nargs="+", default=["store", "memory"],
                        help="paths to run, in this order")
    parser.add_argument("--workdir", type=Path, default=Path("bench_store_scale"))
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    inputs = {}
    sizes = sorted(args.sizes)
    for size in sizes:
        if args.replicate and size != sizes[0]:
            base = inputs[sizes[0]]
            frames, store = replicate(base["memory"], base["store"], size // sizes[0], size,
                                      work)
            seconds = float("nan")
        else:
            frames, store, seconds = prepare(size, work)
        inputs[size] = {"memory": frames, "store": store}
        print(json.dumps({"size": size, "convert_s": round(seconds, 1),
                          "store_MiB": round(sum(p.stat().st_size for p in store.iterdir())
                                             / 2**20, 1), "load1": os.getloadavg()[0]}),
              flush=True)
    for repeat in range(args.repeats):
        for size in sizes:
            for path in args.order:
                if path == "memory":
                    fill_graph_cache(inputs[size]["memory"], inputs[size]["store"], cache)
                run_dir = work / "runs" / f"{path}-{size}-{repeat}"
                result = train_once(inputs[size][path], run_dir, args.batches,
                                    args.batch_size, cache)
                print(json.dumps({"repeat": repeat, "size": size, "path": path, **result,
                                  "load1": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
