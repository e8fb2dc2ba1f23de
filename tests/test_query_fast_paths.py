"""The matcher's fast paths equal the plain code they replace (issue 16, matcher speed).

- the fused predicate (`cluster.query._fuse`) equals `compile_filter`'s closures on the
  random filters and rows of `test_query_filter` (which checks both against the oracle);
- the fast path of number encoding equals the general one, at the edges (2**53, -0.0,
  infinities, the largest doubles) and at random;
- the cursor tag from precomputed HMAC pads equals `hmac.new`, for keys shorter and
  longer than SHA-256's block; a cursor maker bound to one (entity, sort), with its
  prefix hashed once and base64url written without `base64`'s calls, writes the same
  text as `make` and as `hmac.new` + `base64.urlsafe_b64encode` (compressed or not);
- the memo of `shard._encode` equals `encode_value` across kinds that compare equal;
- an interval set stabs exactly with its segment table and with its tree alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from typing import Any

import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.query import CursorSigner, _fuse, compile_filter, encode_value, parse_query
from cluster.query._fuse import fuse
from cluster.query._order import _general_number, _number
from shard import IntervalSet
from shard._encode import encoded
from tests.test_matcher_dispatch import interval_ops
from tests.test_query_filter import filters, rows


@settings(max_examples=400, deadline=None)
@given(filters(), st.lists(rows, min_size=1, max_size=6))
def test_fused_predicate_equals_the_closures(where: dict[str, Any], sample: list[Any]) -> None:
    node = parse_query({"entity": "t", "where": where, "limit": 1}, signer=None).where
    fused, closures = fuse(node), compile_filter(node)
    for row in sample:
        assert fused(row) is closures(row), (where, row)


def test_fused_predicate_inlines_and_falls_back() -> None:
    where = {"cat": "c01", "prio": {"$gte": 3}, "n": {"$ne": None}, "t": {"$in": ["x", 1]},
             "a.b": {"$lt": "m"}, "k": {"$exists": False}, "$or": [{"f": True}, {"g": 2}]}
    node = parse_query({"entity": "t", "where": where, "limit": 1}, signer=None).where
    fused = fuse(node)
    base = {"cat": "c01", "prio": 3, "n": 0, "t": 1, "a": {"b": "a"}, "f": True}
    assert fused(base)
    for change in ({"cat": "c02"}, {"prio": 2.5}, {"prio": True}, {"n": None}, {"t": 1.5},
                   {"t": "1"}, {"a": {"b": "z"}}, {"k": None}, {"f": 1}):
        row = {**base, **change}
        assert not fused(row) and not compile_filter(node)(row), change
    assert fused({**base, "f": False, "g": 2.0})
    assert not fused({k: v for k, v in base.items() if k != "n"})


EDGES: tuple[int | float, ...] = (
    0, -0.0, 0.0, 1, -1, 0.5, 2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63),
    10**30, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308,
    float("inf"), float("-inf"),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.sampled_from(EDGES),
                 st.binary(min_size=8, max_size=8)))
def test_number_fast_path_equals_the_general_encoding(drawn: int | float | bytes) -> None:
    x: int | float = struct.unpack(">d", drawn)[0] if isinstance(drawn, bytes) else drawn
    if x != x:
        return  # NaN is not a JSON value
    assert _number(x) == _general_number(x)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=200), st.binary(max_size=300),
       st.text(max_size=20), st.text(max_size=20))
def test_cursor_tag_equals_hmac(key: bytes, body: bytes, entity: str, sort: str) -> None:
    signer = CursorSigner(key)
    msg = b"%d\0%d\0%s\0%s\0%s" % (1, 0, entity.encode(), sort.encode(), body)
    assert signer._tag(0, entity, sort, body) == hmac.new(key, msg, hashlib.sha256).digest()[:16]
    text = signer.make(entity, sort, body)
    assert signer.open(text, entity, sort, 1 << 16) == body


def _reference_cursor(key: bytes, entity: str, sort: str, position: bytes) -> str:
    """A cursor as `make` wrote it before its fast paths: `hmac.new`, `base64`, zstd."""
    flags, body = 0, position
    if len(position) > 200:
        packed = zstandard.ZstdCompressor(level=3).compress(position)
        if len(packed) < len(position):
            flags, body = 1, packed
    msg = b"%d\0%d\0%s\0%s\0%s" % (1, flags, entity.encode(), sort.encode(), body)
    tag = hmac.new(key, msg, hashlib.sha256).digest()[:16]
    raw = bytes([1, flags]) + tag + body
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=16, max_size=100), st.text(max_size=20), st.text(max_size=20),
       st.lists(st.one_of(st.binary(max_size=80), st.binary(min_size=190, max_size=400),
                          st.integers(201, 600).map(lambda n: b"k" * n)), max_size=5))
def test_bound_cursor_maker_equals_make(key: bytes, entity: str, sort: str,
                                        positions: list[bytes]) -> None:
    signer = CursorSigner(key)
    bound = signer.maker(entity, sort)
    for position in positions:
        text = bound(position)
        assert text == signer.make(entity, sort, position)
        assert text == _reference_cursor(key, entity, sort, position)
        assert signer.open(text, entity, sort, 1 << 16) == position


def test_encoding_memo_keeps_kinds_apart() -> None:
    for x in (1, 1.0, True, 0, 0.0, -0.0, False, "1", None, 2**70, [1], {"a": 1}):
        for _ in range(2):  # the second one from the memo
            assert encoded(x) == encode_value(x), x
    assert encoded(1) != encoded(True) and encoded(0) != encoded(False)


class _TreeOnly(IntervalSet[int]):
    segment_cover = 0  # never a segment table


class _TableAlways(IntervalSet[int]):
    segment_cover = 10**9  # always a segment table


@settings(max_examples=100, deadline=None)
@given(ops=interval_ops)
def test_interval_set_stabs_exactly_with_either_structure(ops: list[tuple[Any, ...]]) -> None:
    sets: list[IntervalSet[int]] = [_TreeOnly(), _TableAlways(), IntervalSet()]
    model: dict[int, tuple[bytes, bytes]] = {}
    for op in ops:
        if op[0] == "add":
            item, lo, hi = op[1], min(op[2], op[3]), max(op[2], op[3])
            if item in model or lo == hi:
                continue
            for s in sets:
                s.add(item, lo, hi)
            model[item] = (lo, hi)
        elif op[0] == "remove":
            if op[1] in model:
                for s in sets:
                    s.remove(op[1])
                del model[op[1]]
        else:
            want = {i for i, (lo, hi) in model.items() if lo <= op[1] < hi}
            for s in sets:
                found: set[int] = set()
                s.stab(op[1], found)
                assert found == want, type(s)
    if model:  # (an empty set builds an empty table whatever the class says)
        for s in sets[:2]:
            s._rebuild()
        assert sets[0]._segments is None and sets[0]._tree is not None
        assert sets[1]._tree is None and sets[1]._segments is not None


def test_fused_predicates_are_kept_by_filter_text_and_bounded() -> None:
    def matches(where: dict[str, Any]) -> Any:
        return parse_query({"entity": "t", "where": where, "limit": 1}, signer=None).matches

    assert matches({"a": 1, "b": "x"}) is matches({"b": "x", "a": 1})  # same canonical text
    one, true = matches({"a": 1}), matches({"a": True})  # 1 == True in Python, not here
    assert one is not true and one({"a": 1}) and not one({"a": True}) and true({"a": True})
    for i in range(_fuse._MEMO + 10):
        matches({"n": i})
    assert len(_fuse._memo) <= _fuse._MEMO
