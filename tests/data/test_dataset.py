import json

import ase.io
import numpy as np
import pytest
import torch

from molsym.data import dataset as dataset_mod
from molsym.data.cache import default_cache_dir
from molsym.data.dataset import GraphDataset, build_store
from molsym.data.graph import atoms_to_graph
from molsym.data.store import concat_stores, graphs_to_store, store_to_graphs
from molsym.errors import ConfigError, InputError
from tests.data.frames import make_frames


@pytest.fixture
def xyz_file(tmp_path):
    path = tmp_path / "mols.extxyz"
    ase.io.write(path, make_frames(12))
    return path


@pytest.fixture
def count_reads(monkeypatch):
    """Wrap the real reader so the test can see how often files are parsed."""
    calls = []
    real = dataset_mod.read_structures

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_mod, "read_structures", counting)
    return calls


def assert_same_graphs(a, b):
    assert len(a) == len(b)
    for ga, gb in zip(a, b, strict=True):
        assert set(ga.keys()) == set(gb.keys())
        for key in ga.keys():
            if isinstance(ga[key], torch.Tensor):
                assert ga[key].dtype == gb[key].dtype, key
                assert torch.equal(ga[key], gb[key]), key
            else:
                assert ga[key] == gb[key], key


def test_store_round_trip_with_uneven_labels(tmp_path):
    frames = make_frames(4)
    for atoms in frames:
        atoms.info.update(energy=atoms.get_potential_energy())
        atoms.arrays["forces"] = atoms.get_forces()
        atoms.calc = None
    frames[1].info["homo"] = -5.5  # only one graph has this label
    frames[2].info["id"] = "f:2"
    single = ase.Atoms("Ar", positions=[[0, 0, 0]])  # a graph with no edge
    graphs = [atoms_to_graph(a, 3.0) for a in frames] + [atoms_to_graph(single, 3.0)]
    path = tmp_path / "store.pt"
    torch.save(graphs_to_store(graphs), path)
    back = store_to_graphs(torch.load(path, weights_only=True))
    assert_same_graphs(graphs, back)
    assert back[-1].edge_index.shape == (2, 0)
    assert "homo" in back[1] and "homo" not in back[0]


def test_second_load_uses_cache_without_reading(xyz_file, tmp_path, count_reads):
    cache = tmp_path / "cache"
    first = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    assert count_reads == [str(xyz_file)] and not first.from_cache
    assert first.cache_path.is_file()
    mtime = first.cache_path.stat().st_mtime_ns
    second = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    assert len(count_reads) == 1, "the cached rerun parsed the file again"
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.cache_path.stat().st_mtime_ns == mtime
    assert_same_graphs(first.graphs, second.graphs)
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]
    # the cache is plain data
    torch.load(first.cache_path, weights_only=True)


def test_changed_file_bytes_invalidate_cache(xyz_file, tmp_path, count_reads):
    cache = tmp_path / "cache"
    before = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    frames = ase.io.read(xyz_file, index=":")
    frames[3].calc.results["energy"] += 1.25
    ase.io.write(xyz_file, frames)
    after = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    assert len(count_reads) == 2 and not after.from_cache
    assert after.cache_path != before.cache_path
    diff = after.graphs[3].energy - before.graphs[3].energy
    assert diff.item() == pytest.approx(1.25, abs=1e-4)


def test_changed_cutoff_dtype_or_option_invalidate_cache(xyz_file, tmp_path, count_reads):
    cache = tmp_path / "cache"
    small = GraphDataset.from_file(xyz_file, 1.2, cache_dir=cache)
    large = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    assert len(count_reads) == 2 and not large.from_cache
    assert large.graphs[0].num_edges > small.graphs[0].num_edges
    double = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache, dtype="float64")
    assert len(count_reads) == 3 and double.graphs[0].pos.dtype == torch.float64
    renamed = GraphDataset.from_file(
        xyz_file, 4.0, cache_dir=cache, reader_options={"energy_key": "free_energy"}
    )
    assert len(count_reads) == 4 and not renamed.from_cache
    assert len({p.name for p in cache.iterdir()}) == 4


def test_no_cache_mode_writes_nothing(xyz_file, tmp_path, count_reads):
    cache = tmp_path / "cache"
    for _ in range(2):
        ds = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache, use_cache=False)
        assert ds.cache_path is None and len(ds) == 12
    assert len(count_reads) == 2 and not cache.exists()


def test_corrupt_cache_is_rebuilt(xyz_file, tmp_path, count_reads):
    cache = tmp_path / "cache"
    ds = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    ds.cache_path.write_bytes(b"truncated")
    again = GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache)
    assert not again.from_cache and len(count_reads) == 2
    assert_same_graphs(ds.graphs, again.graphs)
    assert GraphDataset.from_file(xyz_file, 4.0, cache_dir=cache).from_cache


def test_from_atoms_cache_keyed_by_content(tmp_path):
    frames = make_frames(3)
    for atoms in frames:
        atoms.info["energy"] = atoms.get_potential_energy()
        atoms.calc = None
    a = GraphDataset.from_atoms(frames, 3.0, cache_dir=tmp_path, use_cache=True)
    b = GraphDataset.from_atoms(frames, 3.0, cache_dir=tmp_path, use_cache=True)
    assert not a.from_cache and b.from_cache
    frames[0].positions[0, 0] += 0.01
    c = GraphDataset.from_atoms(frames, 3.0, cache_dir=tmp_path, use_cache=True)
    assert not c.from_cache
    assert float(c.graphs[0].pos[0, 0] - a.graphs[0].pos[0, 0]) == pytest.approx(0.01, abs=1e-6)


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MOLSYM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MOLSYM_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "molsym"


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        GraphDataset.from_file(tmp_path / "nope.xyz", 5.0, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="dtype"):
        GraphDataset.from_file(tmp_path / "nope.xyz", 5.0, dtype="float16")


def test_broken_structure_raise_or_skip(tmp_path):
    frames = make_frames(3)
    frames[1].positions[1] = frames[1].positions[0] + 0.01  # two atoms on top of each other
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, frames)
    with pytest.raises(InputError, match="apart"):
        GraphDataset.from_file(path, 4.0, cache_dir=tmp_path)
    ds = GraphDataset.from_file(path, 4.0, cache_dir=tmp_path, on_error="skip")
    assert len(ds) == 2 and len(ds.errors) == 1 and "1" in ds.errors[0]
    again = GraphDataset.from_file(path, 4.0, cache_dir=tmp_path, on_error="skip")
    assert again.from_cache and again.errors == ds.errors


def test_labels_in_internal_units(xyz_file, tmp_path):
    ds = GraphDataset.from_file(xyz_file, 4.0, cache_dir=tmp_path, dtype="float64")
    frames = ase.io.read(xyz_file, index=":")
    for g, atoms in zip(ds.graphs, frames, strict=True):
        assert g.energy.item() == pytest.approx(atoms.get_potential_energy())
        np.testing.assert_allclose(g.forces.numpy(), atoms.get_forces())
        assert json.dumps(g.id)


def labelled_graphs():
    frames = make_frames(5)
    for atoms in frames:
        atoms.info.update(energy=atoms.get_potential_energy())
        atoms.calc = None
    frames[3].info["homo"] = -5.5
    return [atoms_to_graph(a, 3.0) for a in frames]


def test_concat_stores_equals_one_store():
    graphs = labelled_graphs()
    whole = graphs_to_store(graphs)
    parts = [graphs_to_store(graphs[:2]), graphs_to_store(graphs[2:3]), graphs_to_store(graphs[3:])]
    assert_same_graphs(store_to_graphs(concat_stores(parts)), store_to_graphs(whole))


def test_parallel_build_matches_serial(monkeypatch):
    monkeypatch.setattr(dataset_mod, "PARALLEL_MIN_STRUCTURES", 2)
    frames = make_frames(30)
    for i, atoms in enumerate(frames):
        atoms.info.update(energy=atoms.get_potential_energy(), record=i)
        atoms.calc = None
    frames[17].positions[1] = frames[17].positions[0]  # broken structure in a middle chunk
    serial, serial_err = build_store(frames, 3.0, torch.float64, "skip", num_workers=1)
    parallel, parallel_err = build_store(frames, 3.0, torch.float64, "skip", num_workers=2)
    assert_same_graphs(store_to_graphs(serial), store_to_graphs(parallel))
    assert serial["num_graphs"] == 29 and serial_err == parallel_err and "17" in serial_err[0]
    with pytest.raises(InputError, match="record 17"):
        build_store(frames, 3.0, torch.float64, "raise", num_workers=2)


def test_subset_and_select_fields_share_the_store():
    ds = GraphDataset.from_graphs(labelled_graphs())
    sub = ds.subset([4, 1])
    assert sub[0] is ds[4] or torch.equal(sub[0].pos, ds[4].pos)
    assert sub.first_missing("homo") == 0 and ds.first_missing("homo") == 0
    assert ds.subset([3]).first_missing("homo") is None
    slim = ds.select_fields({"z", "pos", "edge_index", "energy"})
    assert set(slim[2].keys()) == {"z", "pos", "edge_index", "energy", "num_nodes"}
    assert slim[2].pos.data_ptr() == ds[2].pos.data_ptr()
