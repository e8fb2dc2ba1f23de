"""The validated filter tree: what `_parse` produces and `_compile` turns into code.

A `Cmp` is one condition on one column path; `Logic` combines filters. Values in the
tree are already validated for their operator (see `_parse`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Cmp", "CmpOp", "Logic", "LogicOp", "Node"]

CmpOp = Literal[
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$prefix", "$contains"
]
LogicOp = Literal["$and", "$or", "$nor", "$not"]


@dataclass(frozen=True, slots=True)
class Cmp:
    """`path op value`; `path` is the column split on dots."""

    path: tuple[str, ...]
    op: CmpOp
    value: Any


@dataclass(frozen=True, slots=True)
class Logic:
    """`$and`/`$or`/`$nor` over children; `$not` has exactly one child."""

    op: LogicOp
    children: tuple[Node, ...]


Node = Cmp | Logic
