"""Validation of a `where` filter into the tree of `_ast`.

Every refusal is an `InvalidQuery` whose part names where in the filter the problem is
(`where.$or[1].priority.$gte`, `where.ids.$in[3]`). Every operand is plain JSON within
the rules of `cluster.strict_json` (integers in signed 64 bits, bounded nesting), so a
filter compares exactly the values written and its canonical JSON always encodes. Limits
(depth, conditions, `$in` size) come from `QueryLimits`; nothing here evaluates user
input as code or regular expressions.
"""

from __future__ import annotations

from typing import Any

from cluster import strict_json
from cluster.errors import InvalidQuery
from cluster.settings import QueryLimits

from ._ast import Cmp, CmpOp, Logic, Node
from ._values import is_number, is_scalar

__all__ = ["parse_column", "parse_where"]

MAX_COLUMN = 256
_LOGIC = ("$and", "$or", "$nor")
_ORDER_OPS = ("$gt", "$gte", "$lt", "$lte")
_FIELD_OPS = frozenset(
    ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$prefix",
     "$contains", "$not")
)


def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _json(value: Any, part: str) -> Any:
    """`value` if strict_json accepts it, else InvalidQuery naming the part inside it."""
    try:
        strict_json.check(value)
    except strict_json.Refused as e:
        raise InvalidQuery(e.part(part), e.problem) from None
    return value


def parse_column(name: Any, part: str) -> tuple[str, ...]:
    """A column name as a path; refuses empty segments and `$`-names."""
    if not isinstance(name, str) or not name:
        raise InvalidQuery(part, "a column name must be a non-empty string")
    if len(name) > MAX_COLUMN:
        raise InvalidQuery(part, f"column name longer than {MAX_COLUMN} characters")
    _json(name, part)
    path = tuple(name.split("."))
    for segment in path:
        if not segment:
            raise InvalidQuery(part, f"column {name!r} has an empty path segment")
        if segment.startswith("$"):
            raise InvalidQuery(part, f"unknown operator {segment!r}")
        if any(ord(c) < 32 for c in segment):
            raise InvalidQuery(part, f"column {name!r} holds a control character")
    return path


class _Parser:
    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self.conditions = 0

    def count(self, part: str) -> None:
        self.conditions += 1
        if self.conditions > self.limits.max_conditions:
            raise InvalidQuery(part, f"more than {self.limits.max_conditions} conditions")

    def filter(self, obj: Any, part: str, depth: int) -> Node:
        if depth > self.limits.max_depth:
            raise InvalidQuery(part, f"filter nested deeper than {self.limits.max_depth}")
        if not isinstance(obj, dict):
            raise InvalidQuery(part, f"a filter must be an object, got {_kind_name(obj)}")
        children: list[Node] = []
        for key, value in obj.items():
            sub = f"{part}.{key}"
            if key in _LOGIC:
                children.append(self.logic(key, value, sub, depth))
            elif key == "$not":
                children.append(Logic("$not", (self.filter(value, sub, depth + 1),)))
            elif isinstance(key, str) and key.startswith("$"):
                raise InvalidQuery(sub, f"unknown operator {key!r}")
            else:
                path = parse_column(key, sub)
                children.append(self.field(path, value, sub, depth))
        return children[0] if len(children) == 1 else Logic("$and", tuple(children))

    def logic(self, op: str, value: Any, part: str, depth: int) -> Node:
        if not isinstance(value, list) or not value:
            raise InvalidQuery(part, f"{op} takes a non-empty array of filters")
        kids = tuple(self.filter(v, f"{part}[{i}]", depth + 1) for i, v in enumerate(value))
        return Logic(op, kids)  # type: ignore[arg-type]

    def field(self, path: tuple[str, ...], value: Any, part: str, depth: int) -> Node:
        if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
            return self.expression(path, value, part, depth)
        self.count(part)
        return Cmp(path, "$eq", _json(value, part))

    def expression(self, path: tuple[str, ...], expr: Any, part: str, depth: int) -> Node:
        if depth > self.limits.max_depth:
            raise InvalidQuery(part, f"filter nested deeper than {self.limits.max_depth}")
        if not isinstance(expr, dict) or not expr:
            raise InvalidQuery(part, "expected an operator expression such as {\"$gt\": 5}")
        children: list[Node] = []
        for op, operand in expr.items():
            sub = f"{part}.{op}"
            if op not in _FIELD_OPS:
                if isinstance(op, str) and op.startswith("$"):
                    raise InvalidQuery(sub, f"unknown operator {op!r}")
                raise InvalidQuery(sub, "operators and plain fields cannot be mixed")
            if op == "$not":
                is_expr = isinstance(operand, dict) and operand and all(
                    isinstance(k, str) and k.startswith("$") for k in operand
                )
                if not is_expr:
                    raise InvalidQuery(sub, "$not takes an operator expression like {\"$gt\": 5}")
                children.append(Logic("$not", (self.expression(path, operand, sub, depth + 1),)))
                continue
            self.count(sub)
            children.append(Cmp(path, op, _operand(op, operand, sub, self.limits)))
        return children[0] if len(children) == 1 else Logic("$and", tuple(children))


def _operand(op: CmpOp, value: Any, part: str, limits: QueryLimits) -> Any:
    if op in _ORDER_OPS:
        if value is None or not (is_number(value) or isinstance(value, str | bool)):
            got = _kind_name(value)
            raise InvalidQuery(part, f"{op} takes a number, string or bool, got {got}")
    elif op in ("$in", "$nin"):
        if not isinstance(value, list):
            raise InvalidQuery(part, f"{op} takes an array of scalars, got {_kind_name(value)}")
        if len(value) > limits.max_in:
            raise InvalidQuery(part, f"{op} holds more than {limits.max_in} values")
        for i, v in enumerate(value):
            if not is_scalar(v):
                raise InvalidQuery(f"{part}[{i}]", f"{op} takes scalars only, got {_kind_name(v)}")
    elif op == "$exists":
        if not isinstance(value, bool):
            raise InvalidQuery(part, f"$exists takes a bool, got {_kind_name(value)}")
    elif op == "$prefix":
        if not isinstance(value, str):
            raise InvalidQuery(part, f"$prefix takes a string, got {_kind_name(value)}")
    return _json(value, part)


def parse_where(obj: Any, limits: QueryLimits) -> Node:
    """Validate a `where` object (None means `{}`: everything matches)."""
    if obj is None:
        obj = {}
    if isinstance(obj, dict) and not obj:
        return Logic("$and", ())
    return _Parser(limits).filter(obj, "where", 1)
