"""Candidate narrowing and walk bounds: never a false negative.

`IntervalSet` is checked against a brute-force scan (with enough items that its tree is
built and rebuilt), and `Dispatch` against the compiled predicates of many random
filters: every view whose filter matches a row's values must be among the candidates
for those values. Key bounds from the first sort column must keep every matching row:
a bounded walk of an index equals an unbounded one.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.query import encode_value, parse_query
from shard import Dispatch, IntervalSet, plan_for
from shard._bounds import key_bounds
from shard._index import SortIndex
from tests.test_matcher_oracle import IDS, SCALARS, SIGNER, filters, row_values

short_bytes = st.binary(min_size=0, max_size=2)
interval_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 60), short_bytes, short_bytes),
        st.tuples(st.just("remove"), st.integers(0, 60)),
        st.tuples(st.just("stab"), short_bytes),
    ),
    min_size=40,  # enough additions that the tree is built, rebuilt and stabbed
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(ops=interval_ops)
def test_interval_set_stabs_exactly(ops: list[tuple[Any, ...]]) -> None:
    ivs: IntervalSet[int] = IntervalSet()
    model: dict[int, tuple[bytes, bytes]] = {}
    for op in ops:
        if op[0] == "add":
            item, lo, hi = op[1], min(op[2], op[3]), max(op[2], op[3])
            if item in model or lo == hi:
                continue
            ivs.add(item, lo, hi)
            model[item] = (lo, hi)
        elif op[0] == "remove":
            if op[1] in model:
                ivs.remove(op[1])
                del model[op[1]]
        else:
            x = op[1]
            found: set[int] = set()
            ivs.stab(x, found)
            assert found == {i for i, (lo, hi) in model.items() if lo <= x < hi}
        assert len(ivs) == len(model)
    for x in sorted({b for lo, hi in model.values() for b in (lo, hi)}):
        found = set()
        ivs.stab(x, found)
        assert found == {i for i, (lo, hi) in model.items() if lo <= x < hi}


def _query(where: dict[str, Any]) -> Any:
    return parse_query({"entity": "e", "where": where, "limit": 5}, signer=None)


@settings(max_examples=150, deadline=None)
@given(
    wheres=st.lists(filters, min_size=1, max_size=40),
    rows=st.lists(row_values, min_size=1, max_size=20),
    drop=st.sets(st.integers(0, 39)),
)
def test_dispatch_never_misses_a_matching_view(
    wheres: list[dict[str, Any]], rows: list[dict[str, Any]], drop: set[int]
) -> None:
    dispatch: Dispatch[int] = Dispatch()
    queries = {i: _query(w) for i, w in enumerate(wheres)}
    for i, q in queries.items():
        dispatch.add(i, plan_for(q.where))
    for i in drop & set(queries):
        dispatch.remove(i)
        del queries[i]
    for values in rows:
        must = {i for i, q in queries.items() if q.matches(values)}
        assert must <= dispatch.candidates(values, None)
        assert must <= dispatch.candidates(None, values)
        assert must <= dispatch.candidates(values, {"unrelated": 1})
    assert len(dispatch) == len(queries)


@settings(max_examples=100, deadline=None)
@given(
    op=st.sampled_from(("$gt", "$gte", "$lt", "$lte", "$eq", "$in", "$prefix")),
    operand=st.sampled_from(SCALARS),
    values=st.lists(st.sampled_from(SCALARS), min_size=1, max_size=10),
)
def test_indexed_conditions_are_exact(op: str, operand: Any, values: list[Any]) -> None:
    """For one indexable condition the candidates are exactly the matching values."""
    if op in ("$gt", "$gte", "$lt", "$lte") and (operand is None):
        return
    if op == "$prefix" and not isinstance(operand, str):
        return
    where = {"f": {op: [operand] if op == "$in" else operand}}
    query = _query(where)
    assert plan_for(query.where).path == ("f",)
    dispatch: Dispatch[str] = Dispatch()
    dispatch.add("v", plan_for(query.where))
    for x in [*values, "abc", "a\x00", "b"]:
        row = {"f": x}
        assert ("v" in dispatch.candidates(row, None)) == query.matches(row), (where, x)
    assert ("v" in dispatch.candidates({}, None)) == query.matches({})


def test_plan_prefers_equality_and_intersects_ranges() -> None:
    plan = plan_for(_query({"a": {"$gte": 1, "$lt": 5}, "b": {"$in": [1, 2]}, "c": 3}).where)
    assert plan.path == ("c",) and plan.points == frozenset({encode_value(3)})
    plan = plan_for(_query({"a": {"$gte": 1, "$lt": 5}}).where)
    assert plan.path == ("a",) and plan.interval == (encode_value(1), encode_value(5))
    assert plan_for(_query({"$or": [{"a": 1}, {"b": 2}]}).where).path is None
    assert plan_for(_query({"a": {"$ne": 1}}).where).path is None


ORDERED = tuple(v for v in SCALARS if v is not None)
bound_conditions = st.one_of(
    st.builds(
        lambda op, v: {op: v}, st.sampled_from(("$gt", "$gte", "$lt", "$lte")),
        st.sampled_from(ORDERED),
    ),
    st.builds(lambda v: {"$eq": v}, st.sampled_from(SCALARS)),
    st.builds(lambda vs: {"$in": vs}, st.lists(st.sampled_from(SCALARS), max_size=3)),
    st.builds(lambda p: {"$prefix": p}, st.sampled_from(("", "a", "ab", "b"))),
    st.sampled_from(SCALARS),
)
first_column_filters = st.tuples(
    st.lists(bound_conditions, min_size=1, max_size=2),
    st.one_of(st.just({}), st.just({}), filters),
)
# Rows whose first sort column often equals an operand exactly, of every kind.
bound_rows = st.fixed_dictionaries(
    {},
    optional={
        "n": st.sampled_from(SCALARS),
        "s": st.sampled_from(SCALARS),
        "g": st.sampled_from(SCALARS),
        "o": st.fixed_dictionaries({}, optional={"x": st.sampled_from(SCALARS)}),
    },
)


def _operands(condition: Any) -> list[Any]:
    """Values at and around a condition's operands, so rows sit on every boundary."""
    if not isinstance(condition, dict):
        return [condition]
    ((op, v),) = condition.items()
    if op == "$in":
        return list(v)
    if op == "$prefix":
        return [v, v + "a", v + "\x00", v + "\U0001f600"]
    return [v]


def _put(path: str, value: Any) -> dict[str, Any]:
    return {"o": {"x": value}} if path == "o.x" else {path: value}


@settings(max_examples=200, deadline=None)
@given(
    spec=first_column_filters,
    rows=st.dictionaries(st.sampled_from(IDS), bound_rows, max_size=8),
    position=st.one_of(st.none(), st.tuples(st.sampled_from(IDS), bound_rows)),
)
def test_bounded_walks_miss_no_row(
    spec: tuple[list[Any], dict[str, Any]],
    rows: dict[str, dict[str, Any]],
    position: tuple[str, dict[str, Any]] | None,
) -> None:
    """Every first column and direction, with rows on and around each operand."""
    conditions, rest = spec
    for col in ("n", "s", "g", "o.x"):
        edge = {f"e{i}": _put(col, v) for i, c in enumerate(conditions) for v in _operands(c)}
        table = {rid: (1, values) for rid, values in {**rows, **edge}.items()}
        for descending in (False, True):
            where = {"$and": [{col: c} for c in conditions] + [rest]}
            sort = [("-" if descending else "") + col] + (["-s"] if col != "s" else ["g"])
            query = parse_query(
                {"entity": "e", "where": where, "sort": sort, "limit": 5}, signer=None
            )
            index = SortIndex(query, SIGNER, table)
            at = None if position is None else query.sort_key(*position)
            bounded = list(index.walk(at, query.matches, table, key_bounds(query)))
            assert bounded == list(index.walk(at, query.matches, table)), (where, sort)
