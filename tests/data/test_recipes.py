"""Data recipes of the configs: the bundled set, a user's file split 90/5/5 when no size is
given, clear errors when the sizes ask for more than the file has."""

import logging

import pytest

from molsym.data.recipes import bundled_or_file, default_data_root
from molsym.errors import ConfigError
from tests.cli.cli_helpers import write_emt_frames


@pytest.fixture(scope="module")
def frames40(tmp_path_factory):
    return write_emt_frames(tmp_path_factory.mktemp("data") / "train.extxyz", n=40)


def _dm(path, tmp_path, **sizes):
    return bundled_or_file(str(path), data_root=default_data_root(), cutoff=4.0,
                           cache_dir=str(tmp_path / "cache"), **sizes)


def test_file_without_sizes_is_split_90_5_5_and_logged(frames40, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        dm = _dm(frames40, tmp_path)
        dm.setup()
    assert [len(dm.splits.train), len(dm.splits.val), len(dm.splits.test)] == [36, 2, 2]
    assert "data.num_val and data.num_test not set" in caplog.text
    assert "36 train + 2 val" in caplog.text


def test_explicit_sizes_are_used_and_the_rest_is_the_test_set(frames40, tmp_path):
    dm = _dm(frames40, tmp_path, num_train=30, num_val=4)
    dm.setup()
    assert [len(dm.splits.train), len(dm.splits.val), len(dm.splits.test)] == [30, 4, 6]
    dm = _dm(frames40, tmp_path, num_train=20)  # val 5 % = 2, test the rest
    dm.setup()
    assert [len(dm.splits.train), len(dm.splits.val), len(dm.splits.test)] == [20, 2, 18]


def test_sizes_larger_than_the_file_say_so(frames40, tmp_path):
    with pytest.raises(ConfigError, match=r"\(40 structures\).*40 train \+ 2 val = 42 > 40"):
        _dm(frames40, tmp_path, num_train=40, num_val=2).setup()


def test_no_test_set_warns(frames40, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        _dm(frames40, tmp_path, num_train=30, num_val=10).setup()
    assert "no test set" in caplog.text


def test_bundled_set_keeps_the_rmd17_protocol():
    dm = bundled_or_file(None, data_root=default_data_root())
    assert (dm.num_train, dm.num_val, dm.num_test) == (950, 50, None)
    assert dm.path.endswith("train_01.npz") and dm.test_path.endswith("test_01.npz")
