"""The byte-string sort key (`Query.sort_key`) and cursors against the oracle's total order."""

from __future__ import annotations

import base64
import os
import re
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.errors import InvalidQuery
from cluster.query import CursorSigner, Mode, Query, parse_query
from lq.chaos.oracle import Row, oracle_compare, oracle_query, oracle_sort

SIGNER = CursorSigner(b"k" * 32)
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")

POOL: tuple[Any, ...] = (
    None, False, True, 0, -0.0, 1, 1.0, -1, 0.5, -0.5, 2, 1e-300, -1e300,
    2**53, 2**53 + 1, float(2**53), 2**63 - 1, 2**63, -(2**63), float(2**63), 2**64 - 1,
    "", "a", "a\x00", "a\x00b", "a\x01", "ab", "b", "B", "é", "\uffff", "\U0001f600",
    [], [None], [1], [1.0], [1, 2], [2], ["a"], [[]], {}, {"a": 1}, {"b": 0}, {"a": "x"},
    {"a": {"b": None}},
)
SMALL_POOL: tuple[Any, ...] = (None, False, True, 1, 1.0, 2, "a", "b", [1], {"a": 1})
COLUMNS = ("a", "b", "c", "a.b")

ids = st.text(alphabet=st.sampled_from("ab\u00e9\U0001f600~ Z"), min_size=1, max_size=4)


@st.composite
def _row_values(draw: st.DrawFn, pool: tuple[Any, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("a", "b", "c"):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue  # missing
        if choice == 1 and key == "a":
            values[key] = {"b": draw(st.sampled_from(pool))} if draw(st.booleans()) else []
        else:
            values[key] = draw(st.sampled_from(pool))
    return values


def table(pool: tuple[Any, ...] = POOL) -> st.SearchStrategy[list[Row]]:
    """Rows with unique ids; values from a pool, so ties are common."""
    return st.lists(st.tuples(ids, _row_values(pool)), max_size=14, unique_by=lambda r: r[0])


@st.composite
def sorts(draw: st.DrawFn) -> list[str]:
    columns = draw(st.lists(st.sampled_from(COLUMNS), max_size=3, unique=True))
    return [("-" if draw(st.booleans()) else "") + c for c in columns]


def _query(sort: list[str], **extra: Any) -> Query:
    return parse_query({"entity": "tasks", "sort": sort, "limit": 1000, **extra}, signer=SIGNER)


def _key_order(query: Query, rows: list[Row]) -> list[str]:
    return [r[0] for r in sorted(rows, key=lambda r: query.sort_key(r[0], r[1]))]


@settings(max_examples=300, deadline=None)
@given(rows=st.one_of(table(), table(SMALL_POOL)), sort=sorts())
def test_sort_key_order_equals_oracle(rows: list[Row], sort: list[str]) -> None:
    query = _query(sort)
    assert _key_order(query, rows) == oracle_sort(rows, sort)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(ids, _row_values(POOL)), b=st.tuples(ids, _row_values(POOL)), sort=sorts())
def test_sort_key_compares_like_oracle(a: Row, b: Row, sort: list[str]) -> None:
    key = _query(sort).sort_key
    ka, kb = key(a[0], a[1]), key(b[0], b[1])
    expected = oracle_compare(a, b, sort)
    assert (ka > kb) - (ka < kb) == expected
    if a[0] != b[0]:
        assert ka != kb  # the id ends every key: keys are unique per row


numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, 2**53 + 2, 2**53 + 3, float(2**53),
                     float(2**53 + 2), 2**63 - 1, 2**63, 2**63 + 1, float(2**63), 2**64 - 1,
                     float(2**64), -(2**63), -(2**63) + 1, float(-(2**63)), -(2**53) - 1,
                     float(-(2**53)), 0, -0.0, 5e-324, -5e-324]),
)


def _sign(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _check_pair(column: str, descending: bool, x: Any, y: Any, expected: int) -> None:
    """Keys of a row holding x against a row holding y order as `expected` (-1/0/1) says,
    with a tie (0) decided by the ids both ways round."""
    key = _query(["-" + column if descending else column]).sort_key
    expected = -expected if descending else expected
    for x_id, y_id in (("1", "0"), ("0", "1")):
        got = _sign(key(x_id, {column: x}), key(y_id, {column: y}))
        assert got == (expected or _sign(x_id, y_id)), (x, y, x_id, y_id)


@settings(max_examples=500, deadline=None)
@given(x=numbers, y=numbers, descending=st.booleans())
def test_numbers_order_exactly(x: int | float, y: int | float, descending: bool) -> None:
    _check_pair("n", descending, x, y, _sign(Fraction(x), Fraction(y)))


texts = st.one_of(
    st.text(alphabet=st.sampled_from("a\x00\x01b\x7f\uffff\U0001f600\u00e9"), max_size=5),
    st.text(max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(x=texts, y=texts, descending=st.booleans())
def test_strings_order_by_code_point(x: str, y: str, descending: bool) -> None:
    _check_pair("s", descending, x, y, _sign([ord(c) for c in x], [ord(c) for c in y]))


@pytest.mark.parametrize("descending", [False, True])
def test_nul_characters_keep_keys_prefix_free(descending: bool) -> None:
    values = ["", "\x00", "\x00\x00", "\x00\x01", "\x01", "a", "a\x00", "a\x00\x00", "a\x00b",
              "a\x01", "ab", "b"]
    for x in values:
        for y in values:
            _check_pair("s", descending, x, y, _sign(x, y))
    rows: list[Row] = [(f"{i % 4}" * (i % 3 + 1), {"s": v}) for i, v in enumerate(values)]
    rows += [("a", {"s": "a"}), ("ab", {"s": "a"}), ("0a", {"s": "a\x00"})]
    sort = ["-s" if descending else "s"]
    assert _key_order(_query(sort), rows) == oracle_sort(rows, sort)


def test_kind_order_examples() -> None:
    ascending = [None, False, True, -1e300, -1, 0, 0.5, 1, 2**63, "", "a", "b", [1], [2],
                 {"a": 1}, {"b": 0}]
    rows: list[Row] = [(f"r{i:02d}", {"v": v}) for i, v in enumerate(ascending)]
    rows.append(("r99", {}))  # missing sorts with null, then by id
    expected = ["r00", "r99", *[f"r{i:02d}" for i in range(1, len(ascending))]]
    assert _key_order(_query(["v"]), rows) == expected == oracle_sort(rows, ["v"])
    descending = [*[f"r{i:02d}" for i in range(len(ascending) - 1, 0, -1)], "r00", "r99"]
    assert _key_order(_query(["-v"]), rows) == descending == oracle_sort(rows, ["-v"])


def test_arrays_and_objects_order_by_canonical_text() -> None:
    # "[1]" < "[]" and '{"a":1}' < "{}" as text: the letter of the protocol, not length
    rows: list[Row] = [("e", {"v": []}), ("f", {"v": [1]}), ("g", {"v": {}}),
                       ("h", {"v": {"a": 1}}), ("i", {"v": {"b": 1, "a": 2}}),
                       ("j", {"v": {"a": 2, "b": 1}}), ("k", {"v": [1.0]})]
    expected = ["k", "f", "e", "h", "i", "j", "g"]  # "[1.0]" < "[1]" < "[]"
    assert _key_order(_query(["v"]), rows) == expected == oracle_sort(rows, ["v"])


def test_ties_break_by_id_ascending_even_when_descending() -> None:
    rows: list[Row] = [("b", {"v": 1}), ("a", {"v": 1.0}), ("c", {"v": None}), ("d", {})]
    assert _key_order(_query(["-v"]), rows) == ["a", "b", "c", "d"]
    assert oracle_sort(rows, ["-v"]) == ["a", "b", "c", "d"]


# -- cursors ------------------------------------------------------------------------------


WHERES: tuple[dict[str, Any], ...] = ({}, {"b": {"$ne": None}}, {"c": {"$in": [1, "a", None]}})


@settings(max_examples=200, deadline=None)
@given(
    rows=st.one_of(table(), table(SMALL_POOL)),
    cursor_row=st.tuples(ids, _row_values(SMALL_POOL)),
    pick=st.integers(min_value=0),
    sort=sorts(),
    where=st.sampled_from(WHERES),
    limit=st.integers(min_value=1, max_value=6),
)
def test_cursor_round_trip_and_window(
    rows: list[Row], cursor_row: Row, pick: int, sort: list[str], where: dict[str, Any],
    limit: int,
) -> None:
    if rows and pick % 3:
        cursor_row = rows[pick % len(rows)]  # usually a row of the table, sometimes not
    first = _query(sort, where=where)
    key = first.sort_key(cursor_row[0], cursor_row[1])
    cursor = SIGNER.make("tasks", first.sort_spec, key)
    assert URL_SAFE.match(cursor) and len(cursor) <= 1024

    query_json = {"entity": "tasks", "where": where, "sort": sort, "limit": limit}
    after = parse_query({**query_json, "after": cursor}, signer=SIGNER)
    assert after.position == key
    assert after.after == cursor

    window = [
        r for r in rows
        if after.matches(r[1]) and after.sort_key(r[0], r[1]) > after.position
    ]
    got = [r[0] for r in sorted(window, key=lambda r: after.sort_key(r[0], r[1]))][:limit]
    assert got == oracle_query(rows, query_json, after=cursor_row)
    assert got == oracle_query(rows, {**query_json, "after": cursor_row})


def test_long_position_is_compressed_and_round_trips() -> None:
    query = _query(["a", "-b"])
    key = query.sort_key("id", {"a": "x" * 600, "b": ["y"] * 50})
    cursor = SIGNER.make("tasks", query.sort_spec, key)
    assert len(cursor) < len(key)  # compressed
    reopened = parse_query(
        {"entity": "tasks", "sort": ["a", "-b"], "limit": 5, "after": cursor}, signer=SIGNER
    )
    assert reopened.position == key


def _cursor(sort: list[str] | None = None, values: dict[str, Any] | None = None) -> str:
    query = _query(sort if sort is not None else ["-a", "b"])
    key = query.sort_key("row-1", values if values is not None else {"a": 3, "b": "x"})
    return SIGNER.make("tasks", query.sort_spec, key)


def _refused(after: Any, **overrides: Any) -> InvalidQuery:
    query = {"entity": "tasks", "sort": ["-a", "b"], "limit": 10, "after": after, **overrides}
    with pytest.raises(InvalidQuery) as info:
        parse_query(query, signer=SIGNER)
    assert info.value.part == "after"
    assert str(info.value).startswith("after: ")
    return info.value


def test_valid_cursor_is_accepted() -> None:
    query = parse_query(
        {"entity": "tasks", "sort": ["-a", "b"], "limit": 10, "after": _cursor()}, signer=SIGNER
    )
    assert query.position is not None


def test_cursor_of_another_entity_is_refused() -> None:
    _refused(_cursor(), entity="other")
    _refused(_cursor(), entity="Tasks")


@pytest.mark.parametrize("sort", [["a", "b"], ["-a", "-b"], ["-a"], ["b", "-a"], [],
                                  ["-a", "b", "c"], ["-a", "b.c"]])
def test_cursor_of_another_sort_is_refused(sort: list[str]) -> None:
    _refused(_cursor(), sort=sort)


def test_cursor_made_without_sort_is_refused_with_a_sort() -> None:
    _refused(_cursor(sort=[]), sort=["a"])
    assert parse_query(
        {"entity": "tasks", "limit": 1, "after": _cursor(sort=[])}, signer=SIGNER
    ).position is not None


def test_cursor_of_another_key_is_refused() -> None:
    other = CursorSigner(b"j" * 32)
    query = _query(["-a", "b"])
    forged = other.make("tasks", query.sort_spec, query.sort_key("x", {}))
    _refused(forged)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("values", [{"a": 3, "b": "x"}, {"a": 3, "b": "xy"}, {"a": 3, "b": "xyz"}])
def test_every_changed_character_is_refused(values: dict[str, Any]) -> None:
    cursor = _cursor(values=values)
    for i, original in enumerate(cursor):
        for replacement in ALPHABET + "+/=.!~ é":
            if replacement != original:
                _refused(cursor[:i] + replacement + cursor[i + 1 :])


def test_extra_characters_are_refused() -> None:
    cursor = _cursor()
    for extra in ("A", "=", "==", "!", ".", " ", "\n"):
        for i in range(len(cursor) + 1):
            _refused(cursor[:i] + extra + cursor[i:])


def _raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("long", [False, True], ids=["plain", "compressed"])
def test_every_flipped_bit_is_refused(long: bool) -> None:
    values = {"a": 3, "b": "x" * 400} if long else {"a": 3, "b": "x"}
    raw = _raw(_cursor(values=values))
    assert raw[1] == (1 if long else 0)  # the flags byte says whether zstd is used
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            _refused(_text(bytes(flipped)))


def test_truncated_cursor_is_refused() -> None:
    cursor = _cursor()
    for n in range(1, len(cursor)):
        _refused(cursor[:n])
    raw = _raw(cursor)
    for n in range(len(raw)):
        _refused(_text(raw[:n]) or "A")


@pytest.mark.parametrize(
    "garbage",
    ["", "A", "AA", "====", "not a cursor", "!!!!", "\x00", "é" * 8, "a" * 40, "_" * 64,
     _text(bytes([1, 0]) + b"\x00" * 16), _text(bytes([2, 0]) + os.urandom(40)),
     _text(bytes([1, 2]) + os.urandom(40)), _text(bytes([1, 1]) + os.urandom(40))],
)
def test_garbage_is_refused(garbage: str) -> None:
    _refused(garbage)


@settings(max_examples=200, deadline=None)
@given(garbage=st.one_of(st.text(max_size=60), st.text(alphabet=ALPHABET, max_size=80)))
def test_random_text_is_refused(garbage: str) -> None:
    _refused(garbage)


@pytest.mark.parametrize("value", [1, 0, 1.5, True, False, [], ["x"], {}, {"c": "x"}])
def test_non_string_cursor_is_refused(value: Any) -> None:
    _refused(value)


def test_cursor_over_one_kib_is_refused() -> None:
    noise = base64.b64encode(os.urandom(900)).decode()  # does not compress
    long = _cursor(values={"a": 3, "b": noise})
    assert len(long) > 1024
    _refused(long)
    _refused("A" * 1025)
    size = len(noise)
    while len(fits := _cursor(values={"a": 3, "b": noise[:size]})) > 1024:
        size -= 1
    assert len(fits) > 1000
    query = {"entity": "tasks", "sort": ["-a", "b"], "limit": 1, "after": fits}
    assert parse_query(query, signer=SIGNER).position is not None


def test_cursor_in_changes_mode_is_refused() -> None:
    _refused(_cursor(), mode="changes")
    changes = parse_query({"entity": "tasks", "mode": "changes", "after": None}, signer=SIGNER)
    assert changes.mode is Mode.CHANGES and changes.position is None


def test_cursor_without_a_signer_is_refused() -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_query({"entity": "tasks", "sort": ["-a", "b"], "limit": 1, "after": _cursor()},
                    signer=None)
    assert info.value.part == "after"


def test_signer_needs_a_long_key() -> None:
    with pytest.raises(ValueError):
        CursorSigner(b"short")


@st.composite
def _regrouped(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Two sorts whose columns, joined by commas, give the same text."""
    atoms = draw(st.lists(st.text(alphabet=st.sampled_from("ab-\\"), min_size=1, max_size=3),
                          min_size=1, max_size=4))

    def group(joins: list[bool]) -> list[str]:
        out = [atoms[0]]
        for atom, join in zip(atoms[1:], joins, strict=True):
            if join:
                out[-1] += "," + atom
            else:
                out.append(atom)
        return out

    flags = st.lists(st.booleans(), min_size=len(atoms) - 1, max_size=len(atoms) - 1)
    return group(draw(flags)), group(draw(flags))


def _parse_sort_or_none(sort: list[str]) -> Query | None:
    try:
        return _query(sort)
    except InvalidQuery:
        return None  # "-" alone, duplicates, ...


@settings(max_examples=300, deadline=None)
@given(pair=_regrouped())
def test_sort_spec_identifies_the_sort(pair: tuple[list[str], list[str]]) -> None:
    x, y = pair
    qx, qy = _parse_sort_or_none(x), _parse_sort_or_none(y)
    if qx is None or qy is None:
        return
    if x == y:
        assert qx.sort_spec == qy.sort_spec and qx.shape == qy.shape
        return
    assert qx.sort_spec != qy.sort_spec  # the identity of a shard's ordered index
    assert qx.shape != qy.shape  # the identity of a shared view
    cursor = SIGNER.make("tasks", qx.sort_spec, qx.sort_key("r", {}))
    with pytest.raises(InvalidQuery) as info:
        parse_query({"entity": "tasks", "sort": y, "limit": 1, "after": cursor}, signer=SIGNER)
    assert info.value.part == "after"


@pytest.mark.parametrize(("x", "y"), [(["a,b"], ["a", "b"]), (["a,-b"], ["a", "-b"]),
                                      (["a\\", "b"], ["a\\,b"]), (["a\\,b"], ["a\\", "b"])])
def test_commas_in_sort_columns_do_not_collide(x: list[str], y: list[str]) -> None:
    qx, qy = _query(x), _query(y)
    assert qx.sort_spec != qy.sort_spec
    assert qx.shape != qy.shape
    cursor = SIGNER.make("tasks", qx.sort_spec, qx.sort_key("r", {}))
    _refused(cursor, sort=y)
    assert parse_query(
        {"entity": "tasks", "sort": x, "limit": 1, "after": cursor}, signer=SIGNER
    ).position == qx.sort_key("r", {})
