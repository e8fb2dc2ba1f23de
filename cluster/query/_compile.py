"""Compile a filter tree into one predicate over a row's values.

The tree is walked once, here; each condition becomes a closure specialised for its
operator and operand kind, so matching a row is a chain of direct calls, not a walk
that re-reads the query. Semantics are PROTOCOL.md section 2 to the letter.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ._ast import Cmp, Node
from ._values import MISSING, canonical, resolve

__all__ = ["Predicate", "compile_filter", "equals_to", "value_test"]

Predicate = Callable[[dict[str, Any]], bool]
ValueTest = Callable[[Any], bool]

_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_NUM = (int, float)


def equals_to(v: Any) -> ValueTest:
    """The `$eq v` test of one value (MISSING allowed)."""
    if v is None:
        return lambda x: x is None or x is MISSING
    if v is True:
        return lambda x: x is True
    if v is False:
        return lambda x: x is False
    t = type(v)
    if t is int or t is float:
        return lambda x: (type(x) is int or type(x) is float) and x == v
    if t is str:
        return lambda x: type(x) is str and x == v
    text = canonical(v)
    return lambda x: type(x) is t and canonical(x) == text


def _in(values: list[Any]) -> ValueTest:
    strs = frozenset(v for v in values if type(v) is str)
    nums = frozenset(v for v in values if type(v) in _NUM)
    bools = frozenset(v for v in values if type(v) is bool)
    has_null = any(v is None for v in values)

    def test(x: Any) -> bool:
        t = type(x)
        if t is str:
            return x in strs
        if t is int or t is float:
            return x in nums
        if t is bool:
            return x in bools
        return has_null and (x is None or x is MISSING)

    return test


def _order(op: str, v: Any) -> ValueTest:
    cmp = _ORDER[op]
    if type(v) is bool:
        return lambda x: type(x) is bool and cmp(x, v)
    if type(v) is str:
        return lambda x: type(x) is str and cmp(x, v)
    return lambda x: (type(x) is int or type(x) is float) and cmp(x, v)


def _contains(v: Any) -> ValueTest:
    element = equals_to(v)
    is_text = type(v) is str

    def test(x: Any) -> bool:
        t = type(x)
        if t is list:
            return any(element(e) for e in x)
        if t is str:
            return is_text and v in x
        return False

    return test


def value_test(c: Cmp) -> ValueTest:
    """The test of one condition on the value at its path (MISSING when absent)."""
    op, v = c.op, c.value
    if op == "$eq":
        return equals_to(v)
    if op == "$ne":
        eq = equals_to(v)
        return lambda x: not eq(x)
    if op in _ORDER:
        return _order(op, v)
    if op == "$in":
        return _in(v)
    if op == "$nin":
        inn = _in(v)
        return lambda x: not inn(x)
    if op == "$exists":
        return (lambda x: x is not MISSING) if v else (lambda x: x is MISSING)
    if op == "$prefix":
        return lambda x: type(x) is str and x.startswith(v)
    if op == "$contains":
        return _contains(v)
    raise AssertionError(f"unvalidated operator {op}")


def _compile_cmp(c: Cmp) -> Predicate:
    test = value_test(c)
    path = c.path
    if len(path) == 1:
        name = path[0]
        return lambda row: test(row.get(name, MISSING))
    return lambda row: test(resolve(row, path))


def compile_filter(node: Node) -> Predicate:
    """A predicate equal in meaning to `node`."""
    if isinstance(node, Cmp):
        return _compile_cmp(node)
    kids = [compile_filter(k) for k in node.children]
    if node.op == "$not":
        (only,) = kids
        return lambda row: not only(row)
    if node.op == "$and":
        if not kids:
            return lambda row: True
        if len(kids) == 1:
            return kids[0]
        if len(kids) == 2:
            a, b = kids
            return lambda row: a(row) and b(row)
        return lambda row: all(k(row) for k in kids)
    if node.op == "$or":
        return lambda row: any(k(row) for k in kids)
    return lambda row: not any(k(row) for k in kids)


