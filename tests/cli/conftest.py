"""A tiny labelled data set (EMT ethanol frames) and one 1-epoch CLI run shared by the tests."""

import os

import pytest

from tests.cli.cli_helpers import tiny_args, write_emt_frames
from tests.inference.conftest import model_file  # noqa: F401 (a fixture of molsym predict's tests)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    old = os.environ.get("MOLSYM_CACHE_DIR")
    os.environ["MOLSYM_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("MOLSYM_CACHE_DIR", None)
    else:
        os.environ["MOLSYM_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def emt_xyz(tmp_path_factory):
    return write_emt_frames(tmp_path_factory.mktemp("data") / "ethanol_emt.extxyz")


@pytest.fixture(scope="session")
def trained_run(emt_xyz, tmp_path_factory):
    """The output folder of `molsym train` (1 epoch) on the EMT frames."""
    from molsym.cli.train import main

    run_dir = tmp_path_factory.mktemp("run")
    assert main(tiny_args(emt_xyz, run_dir, "seed=1")) == 0
    return run_dir
