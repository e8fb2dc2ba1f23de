"""A set of half-open byte intervals `[lo, hi)` answering "which contain x?".

Stabbing costs O(log n + k) for k answers: the bulk lives in a centered interval tree
(each node keeps the intervals containing its center, sorted by `lo` and by `hi`, so
the answers at a node are one slice found by `bisect`), plus a short side list of
recent additions and a set of recent removals. The tree is rebuilt when the side
structures exceed a fraction of its size, so additions and removals cost O(log n)
amortised, and also once as many stabs as there are items have met non-empty side
structures, so a set that stops changing ends with none (each stab walks them).
Invariant: `_live` holds exactly the items stored, with their intervals; the tree
holds live items plus those in `_gone`; `_fresh` holds the rest of the live ones.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["IntervalSet"]

T = TypeVar("T", bound=Hashable)


class _Node(Generic[T]):
    __slots__ = ("by_hi", "by_lo", "center", "his", "left", "los", "right")

    def __init__(self, center: bytes, here: list[tuple[bytes, bytes, T]]) -> None:
        self.center = center
        by_lo = sorted(here, key=lambda iv: iv[0])
        by_hi = sorted(here, key=lambda iv: iv[1])
        self.los = [iv[0] for iv in by_lo]
        self.by_lo = [iv[2] for iv in by_lo]
        self.his = [iv[1] for iv in by_hi]
        self.by_hi = [iv[2] for iv in by_hi]
        self.left: _Node[T] | None = None
        self.right: _Node[T] | None = None


def _build(ivs: list[tuple[bytes, bytes, T]]) -> _Node[T] | None:
    if not ivs:
        return None
    los = sorted(iv[0] for iv in ivs)
    center = los[len(los) // 2]
    # The median's own interval contains the center, so every level shrinks.
    here = [iv for iv in ivs if iv[0] <= center < iv[1]]
    node = _Node(center, here)
    node.left = _build([iv for iv in ivs if iv[1] <= center])
    node.right = _build([iv for iv in ivs if iv[0] > center])
    return node


class IntervalSet(Generic[T]):
    """Items, each with one non-empty interval `[lo, hi)` of byte strings."""

    __slots__ = ("_fresh", "_gone", "_live", "_stabs", "_tree")

    def __init__(self) -> None:
        self._live: dict[T, tuple[bytes, bytes]] = {}
        self._fresh: dict[T, tuple[bytes, bytes]] = {}
        self._gone: set[T] = set()
        self._tree: _Node[T] | None = None
        self._stabs = 0  # stabs that met non-empty side structures since the last build

    def __len__(self) -> int:
        return len(self._live)

    def add(self, item: T, lo: bytes, hi: bytes) -> None:
        """Store `item` with `[lo, hi)`; an item is stored at most once."""
        if lo >= hi:
            raise ValueError("an interval must be non-empty")
        if item in self._live:
            raise KeyError("item already stored")
        self._live[item] = (lo, hi)
        self._fresh[item] = (lo, hi)
        self._maybe_rebuild()

    def remove(self, item: T) -> None:
        del self._live[item]
        if self._fresh.pop(item, None) is None:
            self._gone.add(item)
        self._maybe_rebuild()

    def _maybe_rebuild(self) -> None:
        if len(self._fresh) + len(self._gone) > 8 + len(self._live) // 8:
            self._rebuild()

    def _rebuild(self) -> None:
        self._tree = _build([(lo, hi, item) for item, (lo, hi) in self._live.items()])
        self._fresh.clear()
        self._gone.clear()
        self._stabs = 0

    def stab(self, x: bytes, out: set[T]) -> None:
        """Add to `out` every item whose interval contains `x`."""
        if self._fresh or self._gone:
            self._stabs += 1
            if self._stabs > len(self._live):
                self._rebuild()
        node = self._tree
        if self._gone:
            found: set[T] = set()
            self._stab_tree(node, x, found)
            out.update(found - self._gone)
        else:
            self._stab_tree(node, x, out)
        for item, (lo, hi) in self._fresh.items():
            if lo <= x < hi:
                out.add(item)

    @staticmethod
    def _stab_tree(node: _Node[T] | None, x: bytes, out: set[T]) -> None:
        while node is not None:
            if x < node.center:
                # Intervals here reach past x (hi > center > x): those with lo <= x hold x.
                out.update(node.by_lo[: bisect_right(node.los, x)])
                node = node.left
            else:
                # Intervals here start at or before x (lo <= center <= x): need hi > x.
                out.update(node.by_hi[bisect_right(node.his, x) :])
                node = node.right
