"""A plain-Python oracle of the query language (PROTOCOL.md section 2).

Written from the protocol text alone, without `cluster.query`: it interprets the filter
JSON by walking it on every call and compares rows with a comparison function, so it is
slow and obviously correct rather than fast. Tests check the real implementation
(compiled predicates, byte-string sort keys, cursors) against it, and `lq chaos` checks
every live list of a run against it (it lives in `lq/` so that both can import it).

API (rows are `(id, values)` pairs, `values` a JSON object as a dict):

- `oracle_match(where, values) -> bool`: does the row match the filter `where`?
- `oracle_compare(a, b, sort) -> int`: -1/0/1 for two rows in the total order of `sort`.
- `oracle_sort(rows, sort) -> [id]`: the ids of `rows` in the total order.
- `oracle_query(rows, query, after=None) -> [id]`: filter, sort, start strictly after the
  position `after` (the `(id, values)` of the cursor's row; `query["after"]` may hold the
  same pair instead of a cursor string), then keep the first `limit` (all when absent).

It assumes the filter is valid (see the parser tests for refusals); values are what
orjson decodes: None, bool, int, float, str, list, dict.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import orjson

__all__ = ["Row", "oracle_compare", "oracle_match", "oracle_query", "oracle_sort"]

Row = tuple[str, dict[str, Any]]


class _Absent:
    """The value of a path that is not in the row."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()
_LOGIC = ("$and", "$or", "$nor")


def _canonical_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _lookup(values: dict[str, Any], column: str) -> Any:
    """The value at a dotted column; _ABSENT when the walk meets a non-object first."""
    current: Any = values
    for key in column.split("."):
        if not isinstance(current, dict) or key not in current:
            return _ABSENT
        current = current[key]
    return current


# -- filters ----------------------------------------------------------------------------


def _sign(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _code_points(text: str) -> list[int]:
    return [ord(c) for c in text]


def _same_kind_cmp(x: Any, v: Any) -> int | None:
    """-1/0/1 when x and v are of one comparable kind (number, string, bool), else None."""
    if _is_number(x) and _is_number(v):
        return _sign(Fraction(x), Fraction(v))  # exact: 1 == 1.0, 2**53 + 1 != 2.0**53
    if isinstance(x, str) and isinstance(v, str):
        return _sign(_code_points(x), _code_points(v))
    if isinstance(x, bool) and isinstance(v, bool):
        return _sign(int(x), int(v))
    return None


def _eq(x: Any, v: Any) -> bool:
    if v is None:
        return x is None or x is _ABSENT
    if isinstance(v, list | dict):
        return isinstance(x, list | dict) and _canonical_text(x) == _canonical_text(v)
    return _same_kind_cmp(x, v) == 0


def _contains(x: Any, v: Any) -> bool:
    if isinstance(x, list):
        return any(_eq(element, v) for element in x)
    if isinstance(x, str):
        return isinstance(v, str) and v in x
    return False


def _operator(op: str, x: Any, v: Any) -> bool:
    if op == "$eq":
        return _eq(x, v)
    if op == "$ne":
        return not _eq(x, v)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        c = _same_kind_cmp(x, v)
        if c is None:
            return False
        holds: dict[str, bool] = {"$gt": c > 0, "$gte": c >= 0, "$lt": c < 0, "$lte": c <= 0}
        return holds[op]
    if op == "$in":
        return any(_eq(x, item) for item in v)
    if op == "$nin":
        return not any(_eq(x, item) for item in v)
    if op == "$exists":
        return (x is not _ABSENT) is bool(v)
    if op == "$prefix":
        return isinstance(x, str) and x.startswith(v)
    if op == "$contains":
        return _contains(x, v)
    if op == "$not":
        return not _expression(x, v)
    raise ValueError(f"the oracle does not know operator {op!r}")


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and any(str(k).startswith("$") for k in value)


def _expression(x: Any, expr: dict[str, Any]) -> bool:
    """An operator expression on one value: all its operators hold."""
    return all(_operator(op, x, operand) for op, operand in expr.items())


def oracle_match(where: dict[str, Any] | None, values: dict[str, Any]) -> bool:
    """Whether a row's values match a (valid) `where` filter; None means `{}`."""
    for key, cond in (where or {}).items():
        if key == "$and":
            ok = all(oracle_match(w, values) for w in cond)
        elif key == "$or":
            ok = any(oracle_match(w, values) for w in cond)
        elif key == "$nor":
            ok = not any(oracle_match(w, values) for w in cond)
        elif key == "$not":
            ok = not oracle_match(cond, values)
        elif _is_expression(cond):
            ok = _expression(_lookup(values, key), cond)
        else:
            ok = _eq(_lookup(values, key), cond)
        if not ok:
            return False
    return True


# -- order ------------------------------------------------------------------------------


def _kind(x: Any) -> int:
    """missing/null < false < true < numbers < strings < arrays < objects."""
    if x is None or x is _ABSENT:
        return 0
    if x is False:
        return 1
    if x is True:
        return 2
    if _is_number(x):
        return 3
    if isinstance(x, str):
        return 4
    if isinstance(x, list):
        return 5
    if isinstance(x, dict):
        return 6
    raise TypeError(f"not a JSON value: {x!r}")


def _value_compare(x: Any, y: Any) -> int:
    kx, ky = _kind(x), _kind(y)
    if kx != ky:
        return -1 if kx < ky else 1
    if kx == 3:
        return _sign(Fraction(x), Fraction(y))
    if kx == 4:
        return _sign(_code_points(x), _code_points(y))
    if kx in (5, 6):
        return _sign(_code_points(_canonical_text(x)), _code_points(_canonical_text(y)))
    return 0  # null/missing tie; false and true are kinds of their own


def oracle_compare(a: Row, b: Row, sort: Sequence[str]) -> int:
    """-1, 0 or 1: row `a` against row `b` in the total order of `sort`, then id."""
    for spec in sort:
        descending = spec.startswith("-")
        column = spec[1:] if descending else spec
        c = _value_compare(_lookup(a[1], column), _lookup(b[1], column))
        if c:
            return -c if descending else c
    return _sign(_code_points(a[0]), _code_points(b[0]))


def _sorted(rows: Sequence[Row], sort: Sequence[str]) -> list[Row]:
    def compare(a: Row, b: Row) -> int:
        return oracle_compare(a, b, sort)

    return sorted(rows, key=functools.cmp_to_key(compare))


def oracle_sort(rows: Sequence[Row], sort: Sequence[str]) -> list[str]:
    """The ids of `rows` in the total order: the sort columns, then id ascending."""
    return [row_id for row_id, _ in _sorted(rows, sort)]


def oracle_query(
    rows: Sequence[Row], query: dict[str, Any], after: Row | None = None
) -> list[str]:
    """The ids a query returns: matching rows in order, strictly after `after`, limited.

    `after` (or a non-None `query["after"]`) is the `(id, values)` the cursor was made
    from; `limit` absent or None means no limit. `entity` and `mode` are ignored.
    """
    if after is None and query.get("after") is not None:
        if isinstance(query["after"], str):
            raise TypeError("the oracle cannot open cursors: pass after=(id, values)")
        row_id, values = query["after"]
        after = (row_id, values)
    sort = query.get("sort") or []
    chosen = [row for row in rows if oracle_match(query.get("where"), row[1])]
    ordered = _sorted(chosen, sort)
    if after is not None:
        position = after
        ordered = [row for row in ordered if oracle_compare(row, position, sort) > 0]
    limit = query.get("limit")
    if limit is not None:
        ordered = ordered[:limit]
    return [row_id for row_id, _ in ordered]
