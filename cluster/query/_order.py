"""The total order of PROTOCOL.md section 2 as byte strings.

`encode_value` maps a value to bytes whose plain byte order is the protocol's order:
missing/null < false < true < numbers < strings < arrays < objects; numbers exactly
(`1 == 1.0`, 64-bit integers beyond 2**53 included); strings by code point (UTF-8 byte
order); arrays and objects by canonical JSON text. Every encoding is prefix-free (a
kind byte, then a fixed width or an escaped, terminated text), so a descending column
is its bytes inverted and a row's key is the plain concatenation of its columns and
its id. Keys are unique per row (the id ends them), so comparisons are done in C by
`bytes.__lt__` and a cursor is simply a key.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._values import MISSING, canonical, resolve

__all__ = ["SortColumn", "SortKey", "encode_id", "encode_value", "make_sort_key"]

SortKey = Callable[[str, dict[str, Any]], bytes]

_NULL, _FALSE, _TRUE, _NUMBER, _STRING, _ARRAY, _OBJECT = (bytes([k]) for k in range(1, 8))
_TERM = b"\x00\x01"
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_D_OFFSET = 1 << 31
_D_MAX = (1 << 32) - 1
_INVERT = bytes(255 - i for i in range(256))
_pack = struct.Struct(">d").pack
_EXACT = 1 << 53  # every int of at most this size is exactly a double
_NO_DISTANCE = _D_OFFSET.to_bytes(4, "big")
_pack_number = struct.Struct(">cd4s").pack  # kind byte, double, distance
_NUMBER_INVERTED = _NUMBER.translate(_INVERT)
_NO_DISTANCE_INVERTED = _NO_DISTANCE.translate(_INVERT)


def _text(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + _TERM


def _number(x: int | float) -> bytes:
    if type(x) is float or (type(x) is int and -_EXACT <= x <= _EXACT):
        # The common case, on the hot path of every re-keyed row: the double is exact
        # (or x is one), so the distance below is 0. Same bytes as the general case.
        if x - x:  # nan for an infinity or a nan: leave those to the general case
            return _general_number(x)
        f = x + 0.0  # ints to float, -0.0 to 0.0
        # The general case's bits: a sign bit set on a positive double is the double
        # -f; a negative one is all its bits inverted. One pack writes the whole value.
        if f >= 0.0:
            return _pack_number(_NUMBER, -f, _NO_DISTANCE)
        return _pack_number(_NUMBER_INVERTED, f, _NO_DISTANCE_INVERTED).translate(_INVERT)
    return _general_number(x)


def _general_number(x: int | float) -> bytes:
    try:
        f = float(x)
    except OverflowError:
        f = float("inf") if x > 0 else float("-inf")
    if f == 0.0:
        f = 0.0  # -0.0 equals 0.0
    n = int.from_bytes(_pack(f), "big")
    n = (n ^ _ALL) if n & _SIGN else (n | _SIGN)
    # Integers that share a double are told apart by their exact distance from it.
    d = 0
    if type(x) is int and f not in (float("inf"), float("-inf")):
        d = x - int(f)
    d = min(max(d + _D_OFFSET, 0), _D_MAX)
    return _NUMBER + n.to_bytes(8, "big") + d.to_bytes(4, "big")


def encode_value(x: Any) -> bytes:
    """Order-preserving bytes of one JSON value (MISSING and None encode alike)."""
    if x is None or x is MISSING:
        return _NULL
    t = type(x)
    if t is str:
        return _STRING + _text(x.encode())
    if t is bool:
        return _TRUE if x else _FALSE
    if t is int or t is float:
        return _number(x)
    if t is list:
        return _ARRAY + _text(canonical(x))
    return _OBJECT + _text(canonical(x))


def encode_id(row_id: str) -> bytes:
    return _text(row_id.encode())


@dataclass(frozen=True, slots=True)
class SortColumn:
    """One sort column: its name as written, its path, and its direction."""

    name: str
    path: tuple[str, ...]
    descending: bool

    @property
    def spec(self) -> str:
        return ("-" if self.descending else "") + self.name


def _column_encoder(col: SortColumn) -> Callable[[dict[str, Any]], bytes]:
    path = col.path
    # One closure per column, without a nested getter: a sort key is computed for every
    # re-keyed row of every index on the hot path of a change.
    if len(path) == 1:
        name = path[0]
        if col.descending:
            return lambda values: encode_value(values.get(name)).translate(_INVERT)
        return lambda values: encode_value(values.get(name))
    if col.descending:
        return lambda values: encode_value(resolve(values, path)).translate(_INVERT)
    return lambda values: encode_value(resolve(values, path))


def make_sort_key(columns: tuple[SortColumn, ...]) -> SortKey:
    """The key function of a sort: columns in order, then the id ascending."""
    encoders = [_column_encoder(c) for c in columns]
    if not encoders:
        return lambda row_id, values: encode_id(row_id)
    if len(encoders) == 1:
        (only,) = encoders
        return lambda row_id, values: only(values) + encode_id(row_id)
    if len(encoders) == 2:
        first, second = encoders
        return lambda row_id, values: first(values) + second(values) + encode_id(row_id)
    return lambda row_id, values: b"".join([*(e(values) for e in encoders), encode_id(row_id)])
