"""One graph as one self-checking byte string: the record format of on-disk stores.

Layout (little endian)::

    b"MSG1" | crc32 (uint32) | header length H (uint32) | header (H bytes of JSON) | buffers

The header is ``{"id": str | null, "fields": [[name, shape], ...]}``; the buffers are the
fields' values in that order, each padded to 8 bytes. A field's dtype is not stored: it
follows from its name (:data:`molsym.keys.INDEX_KEYS` int64, :data:`molsym.keys.BOOL_KEYS`
bool, everything else the store's float dtype), so keys and dtypes are defined once. The
CRC covers everything after it, so a flipped bit anywhere in a record is found on read.
Nothing in a record is executed or names a class: only numbers, shapes and strings.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Container

import numpy as np
import torch
from torch_geometric.data import Data

from molsym import keys

MAGIC = b"MSG1"
_PREFIX = struct.Struct("<4sII")  # magic, crc32, header length
_ALIGN = 8
_NUMPY_DTYPES = {torch.int64: np.dtype("<i8"), torch.bool: np.dtype("bool"),
                 torch.float32: np.dtype("<f4"), torch.float64: np.dtype("<f8")}


class CorruptRecord(ValueError):
    """A record whose bytes are not what was written (bad magic, checksum or layout)."""


def field_dtype(name: str, float_dtype: torch.dtype) -> torch.dtype:
    """The dtype of field ``name`` in a data set whose floats are ``float_dtype``."""
    if name in keys.INDEX_KEYS:
        return torch.int64
    if name in keys.BOOL_KEYS:
        return torch.bool
    return float_dtype


def encode_graph(graph: Data, float_dtype: torch.dtype) -> bytes:
    """The record of ``graph`` (every tensor field, and its ``id``).

    Raises:
        ValueError: a field's dtype is not the one its name implies (see :func:`field_dtype`).
    """
    fields, buffers, ident = [], [], None
    for name, value in sorted(graph.to_dict().items()):
        if name == "num_nodes":
            continue
        if name in keys.STRING_KEYS:
            ident = str(value)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"field {name!r} is a {type(value).__name__}, not a tensor")
        want = field_dtype(name, float_dtype)
        if value.dtype != want:
            raise ValueError(f"field {name!r} is {value.dtype}, the store holds {want}")
        data = value.detach().cpu().contiguous().numpy().tobytes()
        fields.append([name, list(value.shape)])
        buffers.append(data + b"\0" * (-len(data) % _ALIGN))
    header = json.dumps({"id": ident, "fields": fields}, separators=(",", ":")).encode()
    header += b" " * (-(len(header) + _PREFIX.size) % _ALIGN)
    body = header + b"".join(buffers)
    return _PREFIX.pack(MAGIC, zlib.crc32(body), len(header)) + body


def decode_graph(record: bytes | memoryview, float_dtype: torch.dtype,
                 wanted: Container[str] | None = None) -> Data:
    """The graph of a record (only the fields in ``wanted``, when given; ``id`` always).

    Raises:
        CorruptRecord: the bytes fail the magic, the checksum or the layout.
    """
    if len(record) < _PREFIX.size:
        raise CorruptRecord(f"record of {len(record)} bytes is shorter than its prefix")
    magic, crc, header_len = _PREFIX.unpack_from(record)
    if magic != MAGIC:
        raise CorruptRecord(f"bad magic {bytes(magic)!r}")
    buf = bytearray(record)  # one copy: the tensors own writable memory
    body = memoryview(buf)[_PREFIX.size:]
    if zlib.crc32(body) != crc:
        raise CorruptRecord("checksum mismatch")
    try:
        header = json.loads(bytes(body[:header_len]))
        offset = _PREFIX.size + header_len
        fields = {}
        for name, shape in header["fields"]:
            np_dtype = _NUMPY_DTYPES[field_dtype(name, float_dtype)]
            count = math.prod(shape)
            size = count * np_dtype.itemsize
            if wanted is None or name in wanted:
                arr = np.frombuffer(buf, np_dtype, count, offset).reshape(shape)
                fields[name] = torch.from_numpy(arr)
            offset += size + (-size % _ALIGN)
        if offset != len(buf):
            raise CorruptRecord(f"layout ends at byte {offset} of {len(buf)}")
        if header["id"] is not None:
            fields[keys.ID] = header["id"]
        num_nodes = int(header_shape(header, keys.ATOMIC_NUMBERS)[0])
    except (ValueError, KeyError, TypeError, IndexError) as err:
        if isinstance(err, CorruptRecord):
            raise
        raise CorruptRecord(f"bad header: {err}") from None
    return Data(num_nodes=num_nodes, **fields)


def header_shape(header: dict, name: str) -> list[int]:
    for field, shape in header["fields"]:
        if field == name:
            return shape
    raise KeyError(f"record has no field {name!r}")
