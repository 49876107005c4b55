import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from molsym.data.splits import Splits, random_split, resolve_size
from molsym.errors import ConfigError


def test_same_seed_same_split_different_seed_different():
    a = random_split(200, 150, 20, 30, seed=3)
    b = random_split(200, 150, 20, 30, seed=3)
    c = random_split(200, 150, 20, 30, seed=4)
    assert a == b
    assert a.train != c.train
    assert (len(a.train), len(a.val), len(a.test)) == (150, 20, 30)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    f_train=st.floats(0.0, 1.0),
    f_val=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31),
)
def test_split_sizes_and_disjointness(n, f_train, f_val, seed):
    n_val = int(f_val * n)
    n_train = int(f_train * (n - n_val))
    if n_train == 0:
        with pytest.raises(ConfigError):
            random_split(n, n_train, n_val, None, seed)
        return
    s = random_split(n, n_train, n_val, None, seed)  # test takes the rest
    assert (len(s.train), len(s.val), len(s.test)) == (n_train, n_val, n - n_train - n_val)
    everything = s.train + s.val + s.test
    assert sorted(everything) == list(range(n))  # disjoint and complete
    s.validate(n)


def test_fractions_and_remainder():
    s = random_split(100, None, 0.1, 0.2, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (70, 10, 20)
    s = random_split(100, None, 0.05, None, seed=0)  # default: no test from the same file
    assert (len(s.train), len(s.val), len(s.test)) == (95, 5, 0)
    s = random_split(100, 0.5, 10, None, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (50, 10, 40)
    assert resolve_size(1.0, 7, "x") == 7 and resolve_size(1, 7, "x") == 1


def test_separate_test_file_like_rmd17():
    s = random_split(1000, 950, 50, None, seed=1, test_file_size=1000)
    assert (len(s.train), len(s.val)) == (950, 50)
    assert s.test == list(range(1000)) and s.test_source == "test_path"
    s.validate(1000, 1000)
    with pytest.raises(ConfigError):
        random_split(1000, 900, 50, 50, seed=1, test_file_size=1000)


@pytest.mark.parametrize(
    "sizes",
    [(95, 10, None), (None, 60, 50), (10, 1.5, None), (-1, 5, None), (10, "5", None), (0, 5, 5)],
)
def test_impossible_sizes_are_config_errors(sizes):
    with pytest.raises(ConfigError):
        random_split(100, *sizes, seed=0)


def test_too_many_message_names_counts():
    with pytest.raises(ConfigError,
                       match=r"num_train=95 num_val=10 .*95 train \+ 10 val = 105 > 100"):
        random_split(100, 95, 10, None)
    with pytest.raises(ConfigError, match="60 val \\+ 50 test = 110 leave no training structure"):
        random_split(100, None, 60, 50)


def test_split_file_round_trip(tmp_path):
    s = random_split(50, 30, 10, None, seed=7)
    path = tmp_path / "sub" / "splits.json"
    s.save(path)
    raw = json.loads(path.read_text())
    assert raw["train"] == s.train and raw["seed"] == 7
    assert Splits.load(path) == s


@pytest.mark.parametrize(
    "content, match",
    [
        ({"train": [0, 1], "val": [1]}, "two splits"),
        ({"train": [0, 99]}, "out of range"),
        ({"train": [0, 0]}, "repeated"),
        ({"train": [0.5]}, "integers"),
        ({"val": [1]}, "train"),
    ],
)
def test_bad_split_files(tmp_path, content, match):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=match):
        Splits.load(path).validate(10)


def test_missing_or_invalid_split_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Splits.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{train: ")
    with pytest.raises(ConfigError, match="JSON"):
        Splits.load(tmp_path / "bad.json")
