"""molsym.atomic: a target is either untouched or completely replaced, with no temp left."""

import os
import stat

import pytest

from molsym.atomic import atomic_path, write_text_atomic
from molsym.data.splits import Splits


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.pt"]


def test_write_replaces_creates_parents_and_uses_the_umask_mode(tmp_path):
    target = tmp_path / "new" / "folder" / "metrics.json"
    old = os.umask(0o022)
    try:
        write_text_atomic(target, "{}\n")
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["metrics.json"]


def test_split_files_are_written_atomically_and_read_back(tmp_path):
    path = tmp_path / "splits.json"
    Splits([0, 2], [1], [3], seed=4).save(path)
    assert Splits.load(path) == Splits([0, 2], [1], [3], seed=4)
    assert os.listdir(tmp_path) == ["splits.json"]
