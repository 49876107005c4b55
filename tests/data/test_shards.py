"""The sharded on-disk store: round trip, corrupt shards, killed conversions, the sampler."""

import os
import signal
import subprocess
import sys
import time

import ase.io
import ase.units
import numpy as np
import pytest
import torch

from molsym.data.convert import convert
from molsym.data.dataset import GraphDataset
from molsym.data.records import encode_graph
from molsym.data.sharded_dataset import ShardDistributedSampler, ShardedDataset
from molsym.data.shards import MANIFEST, ShardReader, complete_shard, record_key, write_shard
from molsym.data.statistics import compute_statistics
from molsym.data.synthetic import rotated_frames
from molsym.errors import ConfigError, InputError

CUTOFF = 4.0


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("frames") / "frames.extxyz"
    frames = list(rotated_frames(230, pool_size=40, seed=3))
    frames[7].info["gap"] = 1.5  # a label only one frame has
    ase.io.write(path, frames)
    return path


@pytest.fixture(scope="module")
def store(frames_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "st"
    convert([frames_file], out, CUTOFF, frames_per_shard=50, num_workers=1)
    return out


def assert_close_tree(a, b, rel=1e-12):
    """Equal nested dicts/lists, floats to ``rel``."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            assert_close_tree(a[k], b[k], rel)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_close_tree(x, y, rel)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-12)
    else:
        assert a == b


def assert_same_graph(a, b):
    assert sorted(a.keys()) == sorted(b.keys())
    for name in a.keys():
        if isinstance(a[name], torch.Tensor):
            assert a[name].dtype == b[name].dtype, name
            assert torch.equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


def test_round_trip_frames_labels_ids_equal_the_in_memory_graphs(frames_file, store):
    memory = GraphDataset.from_file(frames_file, CUTOFF, use_cache=False, num_workers=1)
    disk = ShardedDataset.open(store, CUTOFF, "float32")
    assert len(disk) == len(memory) == 230
    assert len(disk.reader.shards) == 5  # 4 x 50 + 30
    for k in range(len(memory)):
        assert_same_graph(memory[k], disk[k])
    assert disk.first_missing("gap") == 0 and disk.first_missing("energy") is None
    assert disk[7]["gap"].item() == 1.5


def test_units_are_converted_once_at_conversion(tmp_path):
    frames = list(rotated_frames(20, pool_size=5, seed=1))
    expected = [a.info["energy"] for a in frames]  # eV
    for atoms in frames:
        atoms.info["energy"] = atoms.info["energy"] / (ase.units.kcal / ase.units.mol)
    kcal = tmp_path / "kcal.extxyz"
    ase.io.write(kcal, frames)
    out = tmp_path / "st64"
    convert([kcal], out, CUTOFF, dtype="float64", frames_per_shard=8, num_workers=1,
            reader_options={"energy_unit": "kcal/mol"})
    disk = ShardedDataset.open(out, CUTOFF, "float64")
    got = [float(g["energy"]) for g in disk]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert disk[0]["pos"].dtype == torch.float64 and disk[0]["z"].dtype == torch.int64
    with pytest.raises(ConfigError, match="cutoff 4.0"):
        ShardedDataset.open(out, 5.0, "float64")
    with pytest.raises(ConfigError, match="float64"):
        ShardedDataset.open(out, CUTOFF, "float32")


def test_statistics_of_one_pass_over_the_store_equal_those_in_memory(frames_file, store):
    memory = GraphDataset.from_file(frames_file, CUTOFF, use_cache=False, num_workers=1)
    split = np.random.default_rng(0).permutation(230)[:170]
    a = compute_statistics(memory.subset(split)).to_dict()
    disk = ShardedDataset.open(store).subset(split)
    b = compute_statistics(disk.in_storage_order()).to_dict()
    assert_close_tree(a, b)


def _copy(store, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(store, dst)
    return dst


def test_a_corrupt_record_names_its_shard_and_record_in_one_line(store, tmp_path):
    copy = _copy(store, tmp_path)
    reader = ShardReader(copy)
    shard, local = reader.locate(123)  # shard 2, record 23
    path = copy / reader.shards[shard]["name"]
    record = bytes(reader._txn(shard).get(record_key(local)))  # to find it in the file
    data = bytearray(path.read_bytes())
    at = data.find(record)
    assert at > 0 and data.find(record, at + 1) == -1
    data[at + len(record) - 5] ^= 0xFF  # a flipped byte in the record's last field
    path.write_bytes(bytes(data))
    ds = ShardedDataset.open(copy)
    ds[122]  # its neighbour is fine
    with pytest.raises(InputError) as err:
        ds[123]
    message = str(err.value)
    assert "\n" not in message
    assert f"{path}, record {local}: corrupt record (checksum mismatch)" in message


def test_a_truncated_shard_names_itself(store, tmp_path):
    copy = _copy(store, tmp_path)
    path = copy / "shard-00003.lmdb"
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(InputError, match=r"shard-00003.lmdb: 4096 bytes, the manifest says"):
        ShardedDataset.open(copy)


def test_an_interrupted_shard_write_leaves_no_shard_that_looks_complete(store, tmp_path):
    graphs = [ShardedDataset.open(store)[k] for k in range(20)]

    def records_then_interrupt():
        for g in graphs[:10]:
            yield encode_graph(g, torch.float32)
        raise KeyboardInterrupt

    path = tmp_path / "shard-00000.lmdb"
    with pytest.raises(KeyboardInterrupt):
        write_shard(path, records_then_interrupt(), {}, 1 << 20)
    assert not path.exists() and complete_shard(path) is None
    assert [p.name for p in tmp_path.iterdir()] == [".shard-00000.lmdb.tmp"]
    entry = write_shard(path, (encode_graph(g, torch.float32) for g in graphs), {}, 1 << 20)
    assert complete_shard(path) == entry and entry["count"] == 20


def test_a_killed_conversion_resumes_to_the_same_store(frames_file, store, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "molsym.cli.main", "convert", str(frames_file), "-o", str(out),
           "--cutoff", str(CUTOFF), "--frames-per-shard", "50", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "shard-00001.lmdb").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (out / MANIFEST).exists():
        pytest.skip("the conversion finished before it could be killed")
    for shard in out.glob("shard-*.lmdb"):  # every final-named shard is whole
        assert complete_shard(shard) is not None, shard
    with pytest.raises(ConfigError, match="conversion unfinished"):
        ShardedDataset.open(out)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resuming after" in result.stderr
    resumed, whole = ShardedDataset.open(out), ShardedDataset.open(store)
    assert len(resumed) == len(whole)
    for k in range(len(whole)):
        assert_same_graph(resumed[k], whole[k])
    assert not list(out.glob(".*.tmp"))


def test_another_conversion_into_the_folder_is_refused(frames_file, store):
    with pytest.raises(ConfigError, match="holds another conversion"):
        convert([frames_file], store, 5.0, frames_per_shard=50)


@pytest.mark.parametrize("world", [2, 3])
def test_the_sampler_splits_ranks_disjointly_by_shard(store, world):
    ds = ShardedDataset.open(store).subset(range(0, 230, 1))  # 5 shards, 230 graphs
    shard_of = ds.shard_of_positions()
    for epoch in (0, 1):
        parts = []
        for rank in range(world):
            sampler = ShardDistributedSampler(ds, world, rank, shuffle=True, seed=4,
                                              drop_last=True)
            sampler.set_epoch(epoch)
            parts.append(list(sampler))
        sizes = {len(p) for p in parts}
        assert sizes == {230 // world}
        flat = [i for p in parts for i in p]
        assert len(set(flat)) == len(flat)  # disjoint
        for p in parts:  # a rank reads its share of the shards, plus one at a cut point
            assert len(set(shard_of[p])) <= -(-5 // world) + 1
        if epoch == 0:
            first = parts
    assert first != parts  # a new order every epoch
    padded = ShardDistributedSampler(ds, world, 0, shuffle=False)
    assert len(padded) == -(-230 // world)
