"""A filter tree fused into one generated Python function, for the matcher's hot path.

`compile_filter` (in `_compile`) builds one closure per node, so a row tested against
`{"cat": "c01", "prio": {"$gte": 3}}` costs five Python calls; the fused predicate is
one call evaluating one expression. The common conditions on a plain column (`$eq`,
`$ne` and the order operators on a string, number, bool or null; `$in` over strings)
are written inline, with the very tests of `_compile`; every other condition calls
`_compile`'s own test for it, so there is one statement of the semantics, and a tree
the generator does not cover is never guessed at.

Generating costs about 90 us (Python's `compile`), so `fused` keeps the predicates of
the last few thousand distinct filters by their canonical JSON text: subscriptions and
one-shot queries repeat their filters, and a predicate holds no state.

Invariant: `fuse(node)(row) == compile_filter(node)(row)` for every row (property-tested
against the oracle with the rest of the filter tests). No text of the query reaches the
generated source: names and values are bound as constants of the function's namespace,
and the source holds only generated identifiers and operators.
"""

from __future__ import annotations

from typing import Any

from ._ast import Cmp, Node
from ._compile import Predicate, value_test
from ._values import MISSING, resolve

__all__ = ["fuse", "fused"]

_ORDER = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_NUMBER = "(type({get}) is int or type({x}) is float)"  # {get} first: it assigns {x}


class _Gen:
    """Source text of one predicate, and the constants it names."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {"MISSING": MISSING, "resolve": resolve}

    def bind(self, value: Any) -> str:
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return name

    def node(self, node: Node) -> str:
        if isinstance(node, Cmp):
            return self.cmp(node)
        kids = [self.node(k) for k in node.children]
        if node.op == "$not":
            return f"(not {kids[0]})"
        if node.op == "$and":
            return f"({' and '.join(kids)})" if kids else "True"
        if node.op == "$or":
            return f"({' or '.join(kids)})" if kids else "False"
        return f"(not ({' or '.join(kids)}))" if kids else "True"

    def cmp(self, c: Cmp) -> str:
        if len(c.path) == 1:
            get = f"row.get({self.bind(c.path[0])}, MISSING)"
        else:
            get = f"resolve(row, {self.bind(c.path)})"
        x = f"_x{len(self.names)}"
        self.names[x] = None  # reserve the name; the expression assigns it
        fused = self.inline(c.op, c.value, x)
        if fused is None:
            return f"{self.bind(value_test(c))}({get})"
        return fused.replace("{x}", x).replace("{get}", f"({x} := {get})")

    def inline(self, op: str, v: Any, x: str) -> str | None:
        """The inline form of one condition over `{get}` (its first use) and `{x}`."""
        if op == "$ne":
            eq = self.inline("$eq", v, x)
            return None if eq is None else f"(not {eq})"
        t = type(v)
        if op == "$eq":
            if v is None:
                return "({get} is None or {x} is MISSING)"
            if t is bool:
                return f"({{get}} is {v!r})"
            if t is int or t is float:
                return f"({_NUMBER} and {{x}} == {self.bind(v)})"
            if t is str:
                return f"(type({{get}}) is str and {{x}} == {self.bind(v)})"
            return None
        if op in _ORDER and t is not bool:
            sign = _ORDER[op]
            if t is str:
                return f"(type({{get}}) is str and {{x}} {sign} {self.bind(v)})"
            return f"({_NUMBER} and {{x}} {sign} {self.bind(v)})"
        if op == "$in" and v and all(type(e) is str for e in v):
            return f"(type({{get}}) is str and {{x}} in {self.bind(frozenset(v))})"
        return None


def fuse(node: Node) -> Predicate:
    """One generated function equal in meaning to `compile_filter(node)`."""
    gen = _Gen()
    body = gen.node(node)
    names = {k: v for k, v in gen.names.items() if not k.startswith("_x")}
    source = f"def predicate(row):\n    return {body}\n"
    exec(compile(source, "<lq filter>", "exec"), names)
    predicate: Predicate = names["predicate"]
    return predicate


_MEMO = 4096
_memo: dict[bytes, Predicate] = {}


def fused(text: bytes, node: Node) -> Predicate:
    """`fuse(node)`, kept by `text`, the canonical JSON of the filter `node` was parsed
    from (so equal texts are equal filters). At most `_MEMO` kept; emptied when full."""
    predicate = _memo.get(text)
    if predicate is None:
        if len(_memo) >= _MEMO:
            _memo.clear()
        predicate = _memo[text] = fuse(node)
    return predicate
