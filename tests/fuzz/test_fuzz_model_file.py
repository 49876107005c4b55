"""Fuzz the model-file loader: random bytes, corrupted files and foreign payloads.

Invariant: a :class:`ConfigError` naming the file, or a model that predicts.
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from molsym.deploy import load_model, save_model
from molsym.errors import ConfigError
from tests.fuzz.strategies import check_molsym_error, examples
from tests.inference.conftest import small_model


def _load_or_error(path):
    try:
        return load_model(path)
    except Exception as err:  # noqa: BLE001 - the point: which exception it is
        check_molsym_error(err)
        assert isinstance(err, ConfigError) and str(path) in str(err), str(err)
        return None


@examples(30)
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    path.write_bytes(blob)
    assert _load_or_error(path) is None


@examples(30)
@given(st.data())
def test_corrupted_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(small_model(), path)
    raw = bytearray(path.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip"]))
    k = data.draw(st.integers(0, len(raw) - 1))
    if kind == "truncate":
        raw = raw[:k]
    else:
        raw[k] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    model = _load_or_error(path)
    if model is not None:
        assert hasattr(model, "cutoff")


values = st.one_of(st.none(), st.integers(-5, 200), st.floats(allow_nan=True), st.text(max_size=5),
                   st.lists(st.integers(-1, 130), max_size=3), st.booleans())


@examples(30)
@given(st.data())
def test_foreign_payload(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(small_model(), path)
    payload = torch.load(path, weights_only=True)
    key = data.draw(st.sampled_from(["format_version", "model_class", "config", "state_dict",
                                     "cutoff", "elements", "dtype", "drop", "config_key"]))
    if key == "dtype":
        dtype = data.draw(st.sampled_from([torch.float16, torch.bfloat16, torch.int64]))
        payload["state_dict"] = {k: v.to(dtype) for k, v in payload["state_dict"].items()}
    elif key == "drop":
        payload.pop(data.draw(st.sampled_from(sorted(payload))))
    elif key == "config_key":
        payload["config"][data.draw(st.sampled_from(sorted(payload["config"]) + ["x"]))] = \
            data.draw(values)
    else:
        payload[key] = data.draw(st.one_of(values, st.sampled_from(["os.system", "invariant"])))
    torch.save(payload, path)
    _load_or_error(path)
