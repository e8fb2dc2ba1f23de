"""Where a query's rows can lie in its sort: key bounds from its first sort column.

When the top-level AND of a filter constrains the first sort column (`$eq`, `$in`, the
order operators, `$prefix`), every matching row's key lies in one range `[start, stop)`
of byte strings, so a walk of the index can seek to `start` and end at `stop` instead of
running over the whole index (a price band sorted by price is a few rows, not a scan).

Keys are `column encodings + id` (see `cluster.query._order`); an encoding `e` is
prefix-free, and the byte after a column's encoding inside a key is a kind byte, an
inverted kind byte or a UTF-8 byte of the id, never 0x00 or 0xff. So every key whose
column encodes to `e` lies in `[e, e + 0xff)`, and a descending column's key bytes are
the inverted encoding. Invariant: every key of a matching row lies in the bounds
(they may hold non-matching rows; walks still test each row).
"""

from __future__ import annotations

from cluster.query import Cmp, Query, encode_value

from ._dispatch import KIND_RANGE, conjuncts

__all__ = ["Bounds", "key_bounds"]

Bounds = tuple[bytes | None, bytes | None]
_INVERT = bytes(255 - i for i in range(256))
_TOP = b"\xff"


def _ascending(c: Cmp) -> Bounds:
    if c.op == "$prefix":
        start = encode_value(c.value)[:-2]  # the escaped text, without its terminator
        return start, start + _TOP
    if c.op == "$in":
        if not c.value:
            return None, None
        encoded = [encode_value(v) for v in c.value]
        return min(encoded), max(encoded) + _TOP
    e = encode_value(c.value)
    if c.op == "$eq":
        return e, e + _TOP
    lo, hi = KIND_RANGE[e[0]]
    if c.op in ("$gt", "$gte"):
        return e, hi
    return lo, (e if c.op == "$lt" else e + _TOP)


def _descending(c: Cmp) -> Bounds:
    if c.op == "$prefix":
        # Inverted, a string's continuation may start with 0xff: no upper bound.
        return encode_value(c.value)[:-2].translate(_INVERT), None
    if c.op == "$in":
        if not c.value:
            return None, None
        encoded = [encode_value(v).translate(_INVERT) for v in c.value]
        return min(encoded), max(encoded) + _TOP
    e = encode_value(c.value).translate(_INVERT)
    if c.op == "$eq":
        return e, e + _TOP
    lo, hi = KIND_RANGE[encode_value(c.value)[0]]
    # Kind bytes [lo, hi) invert to [256 - hi, 256 - lo) as a key's first byte.
    first, last = bytes([256 - hi[0]]), bytes([256 - lo[0]])
    if c.op in ("$lt", "$lte"):
        return e, last
    return first, (e if c.op == "$gt" else e + _TOP)


def key_bounds(query: Query) -> Bounds:
    """`[start, stop)` holding every key of a row matching `query` (None: unbounded)."""
    if not query.sort:
        return None, None
    first = query.sort[0]
    bound = _descending if first.descending else _ascending
    start: bytes | None = None
    stop: bytes | None = None
    for c in conjuncts(query.where):
        if c.path != first.path or c.op not in _OPS:
            continue
        lo, hi = bound(c)
        if lo is not None and (start is None or lo > start):
            start = lo
        if hi is not None and (stop is None or hi < stop):
            stop = hi
    return start, stop


_OPS = frozenset(("$eq", "$in", "$gt", "$gte", "$lt", "$lte", "$prefix"))
