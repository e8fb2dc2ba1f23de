"""Encoding of row values: orjson, zstd above a threshold, and a one-byte header.

Header `J` = plain orjson, `Z` = zstd-compressed orjson. The header makes the format
evolvable: a decoder refuses headers it does not know instead of guessing. Lua never
decodes values.
"""

from __future__ import annotations

from typing import Any

import orjson
import zstandard

__all__ = [
    "DEFAULT_COMPRESS_ABOVE",
    "decode",
    "decode_json",
    "dumps",
    "encode",
    "encode_json",
    "loads",
]

DEFAULT_COMPRESS_ABOVE = 512
_PLAIN = b"J"
_ZSTD = b"Z"
_compressor = zstandard.ZstdCompressor(level=3)
_decompressor = zstandard.ZstdDecompressor()


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted keys (the canonical JSON of PROTOCOL.md section 2)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def encode_json(raw: bytes, compress_above: int = DEFAULT_COMPRESS_ABOVE) -> bytes:
    """Frame already-serialized JSON, compressing it when larger than `compress_above`."""
    if len(raw) > compress_above:
        packed = _compressor.compress(raw)
        if len(packed) < len(raw):
            return _ZSTD + packed
    return _PLAIN + raw


def encode(value: Any, compress_above: int = DEFAULT_COMPRESS_ABOVE) -> bytes:
    return encode_json(orjson.dumps(value), compress_above)


def decode_json(data: bytes) -> bytes:
    """The JSON text inside a framed value."""
    head = data[:1]
    if head == _PLAIN:
        return data[1:]
    if head == _ZSTD:
        return _decompressor.decompress(data[1:])
    raise ValueError(f"unknown codec header {head!r}")


def decode(data: bytes) -> Any:
    return orjson.loads(decode_json(data))
