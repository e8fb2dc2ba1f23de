"""The state shared by the subscriptions of one query shape, and its subscribers.

A view answers one `Query.shape` within one collection. Invariants: its state (the
window, see `_window`) always equals the query's result over the collection's current
rows as far as the clients of its subscribers know it; `_snapshot`, when set, is the
snapshot frame of that state (dropped whenever a change emits something, and when the
shared `SnapshotCache` needs room: a snapshot is large and only worth keeping while
subscriptions to its shape keep arriving); `_routes`, when set, groups `subscribers`
by route and is replaced, never mutated.
"""

from __future__ import annotations

import sys
from itertools import islice
from typing import Any

from cluster.query import Query

from ._bounds import key_bounds
from ._index import RowMap, SortIndex
from ._points import PointIndex
from ._types import Frame, MatcherSettings, Message, Routes, ViewDelta

__all__ = ["SnapshotCache", "View"]

_new_tuple = tuple.__new__  # a named tuple from its fields, without its Python __new__


class SnapshotCache:
    """The most recently used snapshot frames, across views (at most `size`)."""

    __slots__ = ("_views", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._views: dict[View, None] = {}

    def keep(self, view: View) -> None:
        views = self._views
        views.pop(view, None)
        views[view] = None
        while len(views) > self.size:
            oldest = next(iter(views))
            del views[oldest]
            oldest._snapshot = None

    def forget(self, view: View) -> None:
        self._views.pop(view, None)

    def __len__(self) -> int:
        return len(self._views)


class View:
    """Base of `WindowView` and `ChangesView`: subscribers, routes, frames."""

    stamps_pos = False  # its messages for a change carry the change's log position

    __slots__ = (
        "_cache",
        "_routes",
        "_snapshot",
        "bounds",
        "cursor",
        "index",
        "matches",
        "offered",
        "points",
        "query",
        "rows",
        "settings",
        "subscribers",
    )

    def __init__(
        self,
        query: Query,
        index: SortIndex,
        rows: RowMap,
        settings: MatcherSettings,
        cache: SnapshotCache,
        points: tuple[PointIndex, frozenset[bytes]] | None = None,
    ) -> None:
        self.query = query
        self.points = points
        self._cache = cache
        self.settings = settings
        self.index = index
        self.rows = rows
        self.matches = query.matches
        self.cursor = index.cursor
        self.bounds = key_bounds(query)
        self.subscribers: dict[str, str] = {}
        self.offered = 0  # changes this view was offered: how well dispatch narrows
        self._routes: Routes | None = None
        self._snapshot: Frame | None = None

    # -- subscribers

    def join(self, sub_id: str, route: str) -> None:
        self.subscribers[sub_id] = sys.intern(route)  # few routes, many subscribers
        self._routes = None

    def part(self, sub_id: str) -> None:
        del self.subscribers[sub_id]
        self._routes = None

    def routes(self) -> Routes:
        """Subscriber ids grouped by route; one shared object until membership changes."""
        if self._routes is None:
            grouped: dict[str, list[str]] = {}
            for sub_id, route in self.subscribers.items():
                grouped.setdefault(route, []).append(sub_id)
            self._routes = {route: tuple(ids) for route, ids in grouped.items()}
        return self._routes

    # -- frames

    def snapshot(self) -> Frame:
        """`reset`, the rows in order, `synced`: encoded once until the state changes."""
        frame = self._snapshot
        if frame is None:
            frame = self._snapshot = Frame.of(self.snapshot_messages())
        self._cache.keep(self)
        return frame

    def emit(self, messages: list[Message]) -> ViewDelta:
        self._snapshot = None
        routes = self._routes
        if routes is None:
            routes = self.routes()
        return _new_tuple(ViewDelta, (routes, Frame.of(messages)))  # one per view per change

    def close(self) -> None:
        """The view is dropped: release its cached snapshot."""
        self._snapshot = None
        self._cache.forget(self)

    def reload(self) -> ViewDelta:
        """Recompute the state from the collection; the delta resets every subscriber."""
        self.refresh()
        return ViewDelta(self.routes(), self.snapshot().because("reload"))

    # -- the result

    def walk(self, after: bytes | None, want: int) -> list[bytes]:
        """The first `want` keys of the result strictly after `after`, in order.

        A view filed under `$eq`/`$in` gathers the rows with those values when that is
        cheaper than walking the sort index: m rows sorted against about `want * n / m`
        rows walked (n rows in all, m of them with the values).
        """
        if self.points is not None:
            index, points = self.points
            m = index.count(points)
            if m * m <= want * len(self.rows):
                return self._gather(after, want)
        return list(islice(self.index.walk(after, self.matches, self.rows, self.bounds), want))

    def _gather(self, after: bytes | None, want: int) -> list[bytes]:
        assert self.points is not None
        index, points = self.points
        key_of = self.index.key_of
        keys = [key_of[rid] for rid in index.gather(points)]
        if after is not None:
            keys = [k for k in keys if k > after]
        keys.sort()
        id_of, rows, matches = self.index.id_of, self.rows, self.matches
        return list(islice((k for k in keys if matches(rows[id_of[k]][1])), want))

    # -- per mode

    def refresh(self) -> None:
        """Recompute the state from the collection's rows."""
        raise NotImplementedError

    def snapshot_messages(self) -> list[Message]:
        raise NotImplementedError

    def verify(self) -> None:
        """Check the view's state against a fresh walk of the collection."""

    def apply(
        self, rid: str, version: int, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> list[Message] | None:
        """The messages one change of row `rid` sends (None: nothing).

        `old`/`new` are the row's values before and after (None: absent); the index's
        `old`/`new` hold its keys before and after.
        """
        raise NotImplementedError
