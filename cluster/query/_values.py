"""JSON value semantics shared by filters and sort keys (PROTOCOL.md section 2).

Invariants: missing and null are one kind; bools are never numbers (`true != 1`);
`1 == 1.0`; arrays and objects compare by canonical JSON (compact, keys sorted).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["MISSING", "canonical", "is_number", "is_scalar", "resolve"]


class _Missing:
    """The value of a path that does not exist in a row; a singleton."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def resolve(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, walking object keys only; MISSING otherwise."""
    cur: Any = values
    for segment in path:
        if type(cur) is not dict:
            return MISSING
        cur = cur.get(segment, MISSING)
        if cur is MISSING:
            return MISSING
    return cur


def canonical(value: Any) -> bytes:
    """Canonical JSON text of a value: compact, keys sorted."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def is_number(value: Any) -> bool:
    t = type(value)
    return t is int or t is float


def is_scalar(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)
