"""Which views a change can affect: an index over one condition of each view's filter.

Each view is filed under at most one condition taken from the top-level AND of its
`where` (so the condition is necessary for a match): an `$eq` or `$in` (points), or the
intersection of its range conditions (`$gt $gte $lt $lte`, `$prefix`) on one column (an
interval). Values are compared as their order-preserving encodings
(`cluster.query.encode_value`), so kinds, `1 == 1.0`, null-equals-missing and code-point
order hold exactly as in the filter. A view with no such condition is always a
candidate. Invariant: every view whose filter matches a row's values is among the
candidates of those values (never a false negative); false positives are filtered by the
view's predicate. The cost of a lookup is one encoding per indexed column plus the
number of candidates.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cluster.query import MISSING, Cmp, Logic, Node, encode_value, resolve

from ._encode import encoded
from ._intervals import IntervalSet

__all__ = ["KIND_RANGE", "Dispatch", "Plan", "conjuncts", "plan_for"]

T = TypeVar("T", bound=Hashable)
Path = tuple[str, ...]

# Kind ranges of the encodings: bools, numbers and strings (see cluster.query._order).
KIND_RANGE = {2: (b"\x02", b"\x04"), 3: (b"\x02", b"\x04"), 4: (b"\x04", b"\x05"),
               5: (b"\x05", b"\x06")}
_AFTER = b"\x00"  # encodings are prefix-free, so `e + _AFTER` is just above `e`
_PREFIX_END = b"\xff"  # above any continuation of an encoded string (none starts with 0xff)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a view is filed: points or an interval on `path`; `path` None = always."""

    path: Path | None
    points: frozenset[bytes] = frozenset()
    interval: tuple[bytes, bytes] | None = None


def conjuncts(node: Node) -> Iterator[Cmp]:
    if isinstance(node, Logic):
        if node.op == "$and":
            for child in node.children:
                yield from conjuncts(child)
        return
    yield node


def _interval(c: Cmp) -> tuple[bytes, bytes]:
    if c.op == "$prefix":
        start = encode_value(c.value)[:-2]  # drop the string terminator
        return start, start + _PREFIX_END
    e = encode_value(c.value)
    lo, hi = KIND_RANGE[e[0]]
    if c.op == "$gt":
        return e + _AFTER, hi
    if c.op == "$gte":
        return e, hi
    if c.op == "$lt":
        return lo, e
    return lo, e + _AFTER


def plan_for(where: Node) -> Plan:
    """The most selective indexable necessary condition of `where`."""
    best: Plan | None = None
    ranges: dict[Path, tuple[bytes, bytes]] = {}
    for c in conjuncts(where):
        if c.op == "$eq" or c.op == "$in":
            values = [c.value] if c.op == "$eq" else c.value
            points = frozenset(encode_value(v) for v in values)
            if best is None or len(points) < len(best.points):
                best = Plan(c.path, points=points)
        elif c.op in ("$gt", "$gte", "$lt", "$lte", "$prefix"):
            lo, hi = _interval(c)
            if c.path in ranges:
                old_lo, old_hi = ranges[c.path]
                lo, hi = max(lo, old_lo), min(hi, old_hi)
            ranges[c.path] = (lo, hi)
    if best is not None:
        return best
    if ranges:
        path, interval = next(iter(ranges.items()))
        return Plan(path, interval=interval)
    return Plan(None)


@dataclass(slots=True)
class _Column(Generic[T]):
    points: dict[bytes, set[T]] = field(default_factory=dict)
    intervals: IntervalSet[T] = field(default_factory=IntervalSet)
    ranged: int = 0  # len(intervals), without a Python-level __len__ call per change
    users: int = 0
    name: str | None = None  # the path's one name, for a top-level column (no call)


_PLAIN = (str, int, float, bool, type(None))


def _value(values: dict[str, Any], path: Path) -> Any:
    return values.get(path[0], MISSING) if len(path) == 1 else resolve(values, path)


class Dispatch(Generic[T]):
    """Views filed by one necessary condition each; see the module docstring."""

    __slots__ = ("_always", "_columns", "_plans")

    def __init__(self) -> None:
        self._columns: dict[Path, _Column[T]] = {}
        self._always: set[T] = set()
        self._plans: dict[T, Plan] = {}

    def add(self, view: T, plan: Plan) -> None:
        """File `view` by its plan (see `plan_for`)."""
        self._plans[view] = plan
        if plan.path is None:
            self._always.add(view)
            return
        col = self._columns.get(plan.path)
        if col is None:
            name = plan.path[0] if len(plan.path) == 1 else None
            col = self._columns[plan.path] = _Column(name=name)
        col.users += 1
        for p in plan.points:
            col.points.setdefault(p, set()).add(view)
        if plan.interval is not None and plan.interval[0] < plan.interval[1]:
            col.intervals.add(view, *plan.interval)
            col.ranged += 1
        # An empty interval (contradictory ranges) matches nothing: filed nowhere.

    def remove(self, view: T) -> None:
        plan = self._plans.pop(view)
        if plan.path is None:
            self._always.discard(view)
            return
        col = self._columns[plan.path]
        for p in plan.points:
            bucket = col.points[p]
            bucket.discard(view)
            if not bucket:
                del col.points[p]
        if plan.interval is not None and plan.interval[0] < plan.interval[1]:
            col.intervals.remove(view)
            col.ranged -= 1
        col.users -= 1
        if not col.users:
            del self._columns[plan.path]

    def candidates(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> set[T]:
        """Views that the row's old or new values may match (a superset, never fewer)."""
        out = set(self._always)
        for path, col in self._columns.items():
            name = col.name  # `_value` inline for a top-level column: a call less
            if old is None or new is None:
                row = new if old is None else old
                if row is None:
                    x = encoded(MISSING)
                else:
                    x = encoded(_value(row, path) if name is None else row.get(name, MISSING))
                y = None
            else:
                if name is None:
                    a, b = _value(old, path), _value(new, path)
                else:
                    a, b = old.get(name, MISSING), new.get(name, MISSING)
                x = encoded(a)
                # the same plain value: one lookup
                same = a is b or (type(a) is type(b) and type(a) in _PLAIN and a == b)
                y = None if same else encoded(b)
            hit = col.points.get(x)
            if hit:
                out |= hit
            intervals = col.intervals if col.ranged else None
            if intervals is not None:
                intervals.stab(x, out)
            if y is not None and y != x:
                hit = col.points.get(y)
                if hit:
                    out |= hit
                if intervals is not None:
                    intervals.stab(y, out)
        return out

    def __len__(self) -> int:
        return len(self._plans)
