"""The one dtype rule: float32 or float64, by name or torch dtype; anything else refused."""

import pytest
import torch

from molsym.dtypes import dtype_name, model_dtype, resolve_dtype, state_dtype
from molsym.errors import ConfigError


@pytest.mark.parametrize("given,expected", [("float32", torch.float32),
                                            ("float64", torch.float64),
                                            ("torch.float64", torch.float64),
                                            (torch.float32, torch.float32)])
def test_names_and_dtypes_resolve(given, expected):
    assert resolve_dtype(given) is expected
    assert resolve_dtype(dtype_name(expected)) is expected  # the metadata spelling round-trips


@pytest.mark.parametrize("bad", ["float16", torch.float16, torch.bfloat16, "double", 64, None])
def test_anything_else_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="float32' or 'float64"):
        resolve_dtype(bad)


def test_model_and_state_dtype():
    lin = torch.nn.Linear(2, 2).double()
    assert model_dtype(lin) is torch.float64
    assert state_dtype({"n": torch.zeros(1, dtype=torch.long), "w": torch.zeros(1)}) \
        is torch.float32
    assert model_dtype(torch.nn.ReLU()) is torch.get_default_dtype()
