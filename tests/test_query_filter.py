"""The compiled filter (`Query.matches`) against the plain-Python oracle (lq/chaos/oracle.py).

Rows and filters are drawn from small pools so that values collide across kinds (1, 1.0,
true, "1"), dotted paths meet objects, arrays and scalars, and fields go missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cluster.errors import InvalidQuery
from cluster.query import parse_query
from lq.chaos.oracle import oracle_match

KEYS = ("a", "b", "c")
PATHS = ("a", "b", "c", "a.b", "a.c", "b.a", "a.b.c", "c.a.b")

SPECIAL_SCALARS: tuple[Any, ...] = (
    None, True, False, 0, 1, 1.0, -1, 0.5, -0.0, 2, 2.0,
    2**53, 2**53 + 1, float(2**53), 2**63 - 1, -(2**63), float(2**63),
    "", "a", "ab", "abc", "b", "A", "1", "é", "\x00", "a\x00", "\U0001f600", "ab\U0001f600",
)

strings = st.text(alphabet=st.sampled_from("ab\x00é\U0001f600Z1"), max_size=4)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # wider ones are refused
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-3, max_value=3),
)
# A tight pool first, so that row values and operands often collide across kinds.
TIGHT: tuple[Any, ...] = (
    None, True, False, 0, 1, 1.0, "1", "a", "ab", "", "\x00", 2**53 + 1, float(2**53),
)
NEAR_BIG: tuple[Any, ...] = (2**53, 2**53 + 1, 2**53 + 2, float(2**53), float(2**53 + 2))
scalars = st.one_of(
    st.none(),
    st.sampled_from(TIGHT),
    st.sampled_from(NEAR_BIG),
    st.sampled_from(SPECIAL_SCALARS),
    strings,
    numbers,
    st.booleans(),
)
non_null_scalars = scalars.filter(lambda v: v is not None)

SHAPES = ("scalar", "object", "array", "array of objects")  # "missing": a key left out


@st.composite
def _shaped(draw: st.DrawFn, depth: int) -> Any:
    """A value of a uniformly chosen shape, so every shape meets every dotted path."""
    shape = draw(st.sampled_from(SHAPES if depth < 3 else SHAPES[:1]))
    if shape == "scalar":
        return draw(scalars)
    if shape == "object":
        return draw(_object(depth + 1))
    if shape == "array":
        return draw(st.lists(scalars, max_size=3))
    return draw(st.lists(_object(depth + 1), min_size=1, max_size=2))


@st.composite
def _object(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in KEYS:
        if draw(st.integers(0, 2)):  # two keys in three are present
            out[key] = draw(_shaped(depth))
    return out


values = _shaped(1)
rows = _object(1)

EXTRA_VALUES: tuple[Any, ...] = (
    [], [1], [1.0], [1, 2], ["a"], [None], [True], [[1]], {}, {"a": 1}, {"a": 1.0},
    {"a": None}, {"b": [1]},
)


def _operand(op: str, depth: int) -> st.SearchStrategy[Any]:
    if op in ("$eq", "$ne", "$contains"):
        return values
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return non_null_scalars
    if op in ("$in", "$nin"):
        return st.lists(scalars, max_size=4)
    if op == "$exists":
        return st.booleans()
    if op == "$prefix":
        return strings
    assert op == "$not"
    return expressions(depth + 1)


FIELD_OPS = (
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$prefix",
    "$contains", "$not",
)


@st.composite
def _expression(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    ops = FIELD_OPS if depth < 3 else FIELD_OPS[:-1]
    chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    return {op: draw(_operand(op, depth)) for op in chosen}


def expressions(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    return _expression(depth)


def _bare(value: Any) -> bool:
    return not (isinstance(value, dict) and any(k.startswith("$") for k in value))


@st.composite
def filters(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    keys: list[str] = list(PATHS)
    if depth < 3:
        keys += ["$and", "$or", "$nor", "$not"]
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3 if depth == 1 else 2,
                           unique=True))
    out: dict[str, Any] = {}
    for key in chosen:
        if key in ("$and", "$or", "$nor"):
            out[key] = draw(st.lists(filters(depth + 1), min_size=1, max_size=2))
        elif key == "$not":
            out[key] = draw(filters(depth + 1))
        else:
            out[key] = draw(st.one_of(values.filter(_bare), expressions(depth)))
    return out


def _matcher(where: Any) -> Any:
    return parse_query({"entity": "t", "where": where, "limit": 10}, signer=None).matches


@settings(max_examples=300, deadline=None)
@given(where=filters(), sample=st.lists(rows, min_size=1, max_size=6))
def test_matches_equals_oracle(where: dict[str, Any], sample: list[dict[str, Any]]) -> None:
    try:
        matches = _matcher(where)
    except InvalidQuery as e:
        assume("conditions" not in str(e))  # the strategy can build over 64 of them
        raise
    for row in sample:
        assert matches(row) == oracle_match(where, row), (where, row)


def _parts(value: Any) -> list[Any]:
    """The value and everything nested in it (so operands can be taken from the rows)."""
    out = [value]
    if isinstance(value, list):
        for v in value:
            out += _parts(v)
    elif isinstance(value, dict):
        for v in value.values():
            out += _parts(v)
    return out


def _operand_from(op: str, seen: list[Any]) -> st.SearchStrategy[Any]:
    """An operand for `op` built from values seen in the rows, else a fresh one."""
    if op in ("$eq", "$ne", "$contains"):
        usable = seen
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        usable = [v for v in seen if v is not None and not isinstance(v, list | dict)]
    elif op in ("$in", "$nin"):
        picks = [v for v in seen if not isinstance(v, list | dict)]
        if not picks:
            return _operand(op, 1)
        return st.lists(st.sampled_from(picks), max_size=3)
    elif op == "$prefix":
        usable = [v[:i] for v in seen if isinstance(v, str) for i in range(len(v) + 1)]
    else:
        usable = []
    return st.sampled_from(usable) if usable else _operand(op, 1)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(PATHS),
    op=st.sampled_from(FIELD_OPS[:-1]),
    data=st.data(),
    sample=st.lists(rows, min_size=1, max_size=8),
)
def test_every_operator_alone(
    path: str, op: str, data: st.DataObject, sample: list[dict[str, Any]]
) -> None:
    seen = [part for row in sample for part in _parts(row)][1:]
    operand = data.draw(st.one_of(_operand(op, 1), _operand_from(op, seen)))
    for where in ({path: {op: operand}}, {path: {"$not": {op: operand}}},
                  {"$not": {path: {op: operand}}}, {"$nor": [{path: {op: operand}}]}):
        matches = _matcher(where)
        for row in sample:
            assert matches(row) == oracle_match(where, row), (where, row)


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(PATHS), value=values.filter(_bare), row=rows)
def test_bare_value_is_eq(path: str, value: Any, row: dict[str, Any]) -> None:
    bare, explicit = _matcher({path: value}), _matcher({path: {"$eq": value}})
    assert bare(row) == explicit(row) == oracle_match({path: value}, row)
    # $ne is exactly $not $eq
    assert _matcher({path: {"$ne": value}})(row) is not explicit(row)


@pytest.mark.parametrize("op", FIELD_OPS[:-1])
def test_every_operator_on_every_pair_of_values(op: str) -> None:
    """Exhaustive: each special value (and missing) as the field, each valid operand."""
    fields: list[dict[str, Any]] = [{}] + [{"f": x} for x in SPECIAL_SCALARS + EXTRA_VALUES]
    operands: list[Any]
    if op in ("$eq", "$ne", "$contains"):
        operands = [*SPECIAL_SCALARS, *EXTRA_VALUES]
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        operands = [v for v in SPECIAL_SCALARS if v is not None]
    elif op in ("$in", "$nin"):
        operands = [[v] for v in SPECIAL_SCALARS] + [[], [1, "a", None], [True, 0.5]]
    elif op == "$exists":
        operands = [True, False]
    else:
        operands = [v for v in SPECIAL_SCALARS if isinstance(v, str)]
    checked = 0
    for operand in operands:
        where = {"f": {op: operand}}
        matches = _matcher(where)
        for row in fields:
            assert matches(row) == oracle_match(where, row), (where, row)
            checked += 1
    assert checked >= 2 * len(fields)


# -- the tricky rules, by name ------------------------------------------------------------


def _m(where: dict[str, Any], row: dict[str, Any]) -> bool:
    got = bool(_matcher(where)(row))
    assert got == oracle_match(where, row), "the oracle disagrees with the example"
    return got


def test_ne_value_matches_missing() -> None:
    assert _m({"f": {"$ne": "x"}}, {})
    assert _m({"f": {"$ne": "x"}}, {"f": None})
    assert _m({"f": {"$ne": "x"}}, {"f": "y"})
    assert not _m({"f": {"$ne": "x"}}, {"f": "x"})


def test_ne_null_does_not_match_missing() -> None:
    assert not _m({"f": {"$ne": None}}, {})
    assert not _m({"f": {"$ne": None}}, {"f": None})
    assert _m({"f": {"$ne": None}}, {"f": 0})
    assert _m({"f": {"$ne": None}}, {"f": False})


@pytest.mark.parametrize("where", [{"f": None}, {"f": {"$eq": None}}, {"f": {"$in": [None]}}])
def test_null_matches_missing_and_null_only(where: dict[str, Any]) -> None:
    assert _m(where, {})
    assert _m(where, {"f": None})
    assert _m(where, {"g": 1})
    others: tuple[Any, ...] = (0, False, "", [], {}, "null", [None])
    for other in others:
        assert not _m(where, {"f": other}), other


def test_true_never_equals_one() -> None:
    assert not _m({"f": True}, {"f": 1})
    assert not _m({"f": 1}, {"f": True})
    assert not _m({"f": 0}, {"f": False})
    assert not _m({"f": {"$in": [1]}}, {"f": True})
    assert not _m({"f": {"$in": [True]}}, {"f": 1})
    assert not _m({"f": {"$gte": 0}}, {"f": True})
    assert not _m({"f": {"$lt": True}}, {"f": 0})
    assert _m({"f": {"$lt": True}}, {"f": False})
    assert _m({"f": {"$gt": False}}, {"f": True})
    assert not _m({"f": {"$contains": 1}}, {"f": [True]})
    assert _m({"f": {"$nin": [1]}}, {"f": True})


def test_one_equals_one_point_zero() -> None:
    assert _m({"f": 1}, {"f": 1.0})
    assert _m({"f": 1.0}, {"f": 1})
    assert _m({"f": {"$in": [1.0]}}, {"f": 1})
    assert _m({"f": {"$lte": 1}}, {"f": 1.0})
    assert not _m({"f": {"$lt": 1}}, {"f": 1.0})
    assert _m({"f": {"$contains": 1}}, {"f": [1.0]})
    assert _m({"f": 0}, {"f": -0.0})


def test_big_integers_compare_exactly() -> None:
    big = 2**53 + 1
    assert not _m({"f": big}, {"f": float(2**53)})
    assert _m({"f": {"$gt": float(2**53)}}, {"f": big})
    assert not _m({"f": {"$in": [float(2**53)]}}, {"f": big})
    assert _m({"f": 2**63 - 1}, {"f": 2**63 - 1})
    assert _m({"f": -(2**63)}, {"f": float(-(2**63))})
    assert _m({"f": {"$lt": float(2**63)}}, {"f": 2**63 - 1})
    assert not _m({"f": 2**63 - 1}, {"f": float(2**63)})
    assert _m({"f": float(2**63)}, {"f": 2**63})  # a row stored before 2**63 was refused


def test_order_operators_need_one_kind() -> None:
    assert not _m({"f": {"$gt": 5}}, {"f": "9"})
    assert not _m({"f": {"$lt": "9"}}, {"f": 5})
    assert not _m({"f": {"$gte": "a"}}, {"f": ["b"]})
    assert not _m({"f": {"$lte": 5}}, {})
    assert not _m({"f": {"$lte": 5}}, {"f": None})
    assert _m({"f": {"$gt": "Z"}}, {"f": "a"})
    assert _m({"f": {"$gt": "\uffff"}}, {"f": "\U0001f600"})  # code points, not UTF-16


def test_arrays_and_objects_equal_by_canonical_json() -> None:
    assert _m({"f": {"a": 1, "b": [1, 2]}}, {"f": {"b": [1, 2], "a": 1}})
    assert not _m({"f": {"a": 1}}, {"f": {"a": 1, "b": None}})
    assert _m({"f": [1, "x", None]}, {"f": [1, "x", None]})
    assert not _m({"f": [1, 2]}, {"f": [2, 1]})
    assert not _m({"f": [1]}, {"f": 1})
    assert not _m({"f": {"$eq": []}}, {"f": {}})
    # canonical JSON text of [1.0] is "[1.0]", not "[1]": the letter of the protocol
    assert not _m({"f": [1]}, {"f": [1.0]})
    assert _m({"f": {"$ne": [1, 2]}}, {})
    assert _m({"f": {"$eq": {"$x": 1}, "$ne": None}}, {"f": {"$x": 1}})


def test_dotted_path_walks_objects_only() -> None:
    assert _m({"a.b": 1}, {"a": {"b": 1}})
    assert _m({"a.b.c": "x"}, {"a": {"b": {"c": "x"}}})
    assert not _m({"a.b": 1}, {"a": [{"b": 1}]})
    assert _m({"a.b": None}, {"a": [{"b": 1}]})
    assert _m({"a.b": {"$exists": False}}, {"a": [{"b": 1}]})
    assert _m({"a.b": {"$exists": False}}, {"a": 5})
    assert _m({"a.b": {"$exists": False}}, {"a": "b"})
    assert _m({"a.b": {"$exists": False}}, {"a": None})
    assert not _m({"a.0": 1}, {"a": [1]})
    assert not _m({"a.b": 1}, {"a.b": 1})
    assert _m({"a.b": {"$ne": 1}}, {"a": [{"b": 1}]})


def test_exists() -> None:
    assert _m({"f": {"$exists": True}}, {"f": None})
    assert not _m({"f": {"$exists": True}}, {})
    assert _m({"f": {"$exists": False}}, {})
    assert not _m({"f": {"$exists": False}}, {"f": False})


def test_nin_matches_missing() -> None:
    assert _m({"f": {"$nin": ["x", 1]}}, {})
    assert _m({"f": {"$nin": []}}, {})
    assert not _m({"f": {"$nin": [None]}}, {})
    assert not _m({"f": {"$nin": ["x", 1]}}, {"f": 1.0})
    assert _m({"f": {"$nin": ["x", 1]}}, {"f": "1"})
    assert not _m({"f": {"$in": []}}, {})
    assert not _m({"f": {"$in": ["x"]}}, {"f": ["x"]})


def test_contains_on_arrays_and_strings() -> None:
    assert _m({"f": {"$contains": "x"}}, {"f": ["x", "y"]})
    assert not _m({"f": {"$contains": "x"}}, {"f": ["xy"]})
    assert _m({"f": {"$contains": "x"}}, {"f": "axb"})
    assert _m({"f": {"$contains": ""}}, {"f": "abc"})
    assert not _m({"f": {"$contains": "x"}}, {})
    assert not _m({"f": {"$contains": 1}}, {"f": "1"})
    assert not _m({"f": {"$contains": 1}}, {"f": 1})
    assert _m({"f": {"$contains": None}}, {"f": [1, None]})
    assert _m({"f": {"$contains": [1]}}, {"f": [[1], 2]})
    assert _m({"f": {"$contains": {"a": 1, "b": 2}}}, {"f": [{"b": 2, "a": 1}]})
    assert not _m({"f": {"$contains": "a"}}, {"f": {"a": 1}})
    assert _m({"f": {"$contains": "\x00"}}, {"f": "a\x00b"})


def test_prefix_is_for_strings_only() -> None:
    assert _m({"f": {"$prefix": "ab"}}, {"f": "abc"})
    assert _m({"f": {"$prefix": ""}}, {"f": ""})
    assert not _m({"f": {"$prefix": "ab"}}, {"f": "a"})
    assert not _m({"f": {"$prefix": "1"}}, {"f": 12})
    assert not _m({"f": {"$prefix": "ab"}}, {"f": ["abc"]})
    assert not _m({"f": {"$prefix": "t"}}, {"f": True})
    assert not _m({"f": {"$prefix": ""}}, {})
    assert not _m({"f": {"$prefix": "n"}}, {"f": None})


def test_logic() -> None:
    row = {"status": "open", "n": 7}
    assert _m({"$not": {"status": "closed"}}, row)
    assert not _m({"$not": {"status": "open", "n": 7}}, row)
    assert _m({"$not": {"status": "open", "n": 8}}, row)
    assert _m({"$or": [{"n": 1}, {"n": {"$gt": 5}}]}, row)
    assert not _m({"$nor": [{"n": 1}, {"n": {"$gt": 5}}]}, row)
    assert _m({"$and": [{"status": "open"}, {"n": 7}], "$nor": [{"n": 8}]}, row)
    assert _m({"n": {"$not": {"$gt": 8}}}, row)
    assert not _m({"n": {"$not": {"$gt": 5, "$lt": 9}}}, row)
    assert _m({"n": {"$not": {"$not": {"$gt": 5}}}}, row)
    assert _m({"missing": {"$not": {"$gt": 5}}}, row)
    assert _m({}, row)
    assert _m({"$and": [{}]}, row)
    assert not _m({"$not": {}}, row)
    assert not _m({"status": "open", "n": 8}, row)
