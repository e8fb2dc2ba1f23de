"""A set of half-open byte intervals `[lo, hi)` answering "which contain x?".

Stabbing costs O(log n + k) for k answers: the bulk lives in a built structure, plus a
short side list of recent additions and a set of recent removals. The built structure
is a table of elementary segments (the sorted ends of every interval, and for each
segment between two ends the frozen set of items covering it: one `bisect` and one set
union per stab, all in C) while the items cover few segments each (at most
`segment_cover` entries in all, per item); else, as when many wide intervals overlap, a
centered interval tree (each node keeps the intervals containing its center, sorted by
`lo` and by `hi`, so the answers at a node are one slice found by `bisect`). It is
rebuilt when the side structures exceed a fraction of its size, so additions and
removals cost O(log n) amortised, and also once as many stabs as there are items have
met non-empty side structures, so a set that stops changing ends with none (each stab
walks them).
Invariant: `_live` holds exactly the items stored, with their intervals; the built
structure holds live items plus those in `_gone`; `_fresh` holds the rest of the live
ones.
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


class _Segments(Generic[T]):
    """`covers[i]`: the items whose interval holds `[ends[i], ends[i + 1])`."""

    __slots__ = ("covers", "ends")

    def __init__(self, ends: list[bytes], covers: list[frozenset[T]]) -> None:
        self.ends = ends
        self.covers = covers


def _segments(ivs: list[tuple[bytes, bytes, T]], most: int) -> _Segments[T] | None:
    """The segment table of `ivs`; None when it would hold more than `most` entries."""
    starts: dict[bytes, list[T]] = {}
    stops: dict[bytes, list[T]] = {}
    for lo, hi, item in ivs:
        starts.setdefault(lo, []).append(item)
        stops.setdefault(hi, []).append(item)
    ends = sorted(starts.keys() | stops.keys())
    covers: list[frozenset[T]] = []
    active: set[T] = set()
    held = 0
    for end in ends:
        active.difference_update(stops.get(end, ()))
        active.update(starts.get(end, ()))
        held += len(active)
        if held > most:
            return None
        covers.append(frozenset(active))
    return _Segments(ends, covers)


class IntervalSet(Generic[T]):
    """Items, each with one non-empty interval `[lo, hi)` of byte strings."""

    __slots__ = ("_fresh", "_gone", "_live", "_segments", "_stabs", "_tree")

    segment_cover = 16  # entries of a segment table per item, at most (else a tree)

    def __init__(self) -> None:
        self._live: dict[T, tuple[bytes, bytes]] = {}
        self._fresh: dict[T, tuple[bytes, bytes]] = {}
        self._gone: set[T] = set()
        self._tree: _Node[T] | None = None
        self._segments: _Segments[T] | None = None
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
        ivs = [(lo, hi, item) for item, (lo, hi) in self._live.items()]
        self._segments = _segments(ivs, self.segment_cover * len(ivs))
        self._tree = _build(ivs) if self._segments is None else None
        self._fresh.clear()
        self._gone.clear()
        self._stabs = 0

    def stab(self, x: bytes, out: set[T]) -> None:
        """Add to `out` every item whose interval contains `x`."""
        if self._fresh or self._gone:
            self._stabs += 1
            if self._stabs > len(self._live):
                self._rebuild()
        if self._gone:
            found: set[T] = set()
            self._stab_built(x, found)
            out.update(found - self._gone)
        else:
            self._stab_built(x, out)
        for item, (lo, hi) in self._fresh.items():
            if lo <= x < hi:
                out.add(item)

    def _stab_built(self, x: bytes, out: set[T]) -> None:
        table = self._segments
        if table is not None:
            i = bisect_right(table.ends, x) - 1
            if i >= 0:
                out |= table.covers[i]
            return
        node = self._tree
        while node is not None:
            if x < node.center:
                # Intervals here reach past x (hi > center > x): those with lo <= x hold x.
                out.update(node.by_lo[: bisect_right(node.los, x)])
                node = node.left
            else:
                # Intervals here start at or before x (lo <= center <= x): need hi > x.
                out.update(node.by_hi[bisect_right(node.his, x) :])
                node = node.right
