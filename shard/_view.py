"""The state shared by the subscriptions of one query shape, and its subscribers.

A view answers one `Query.shape` within one collection. Invariants: its state (the
window, see `_window`) always equals the query's result over the collection's current
rows as far as the clients of its subscribers know it; `_snapshot`, when set, is the
snapshot frame of that state (dropped whenever a change emits something); `_routes`,
when set, groups `subscribers` by route and is replaced, never mutated.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from cluster.query import CursorSigner, Query

from ._index import RowMap, SortIndex
from ._types import Frame, Message, Routes, ViewDelta

__all__ = ["View"]


class View:
    """Base of `WindowView` and `ChangesView`: subscribers, routes, frames."""

    __slots__ = (
        "_routes",
        "_snapshot",
        "cursor",
        "index",
        "matches",
        "offered",
        "query",
        "rows",
        "subscribers",
    )

    def __init__(self, query: Query, index: SortIndex, rows: RowMap, signer: CursorSigner) -> None:
        self.query = query
        self.index = index
        self.rows = rows
        self.matches = query.matches
        self.cursor = partial(signer.make, query.entity, query.sort_spec)
        self.subscribers: dict[str, str] = {}
        self.offered = 0  # changes this view was offered: how well dispatch narrows
        self._routes: Routes | None = None
        self._snapshot: Frame | None = None

    # -- subscribers

    def join(self, sub_id: str, route: str) -> None:
        self.subscribers[sub_id] = route
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
        if self._snapshot is None:
            self._snapshot = Frame.of(self.snapshot_messages())
        return self._snapshot

    def emit(self, messages: list[Message]) -> ViewDelta:
        self._snapshot = None
        return ViewDelta(self.routes(), Frame.of(messages))

    def reload(self) -> ViewDelta:
        """Recompute the state from the collection; the delta resets every subscriber."""
        self.refresh()
        return ViewDelta(self.routes(), self.snapshot())

    # -- per mode

    def refresh(self) -> None:
        """Recompute the state from the collection's rows."""
        raise NotImplementedError

    def snapshot_messages(self) -> list[Message]:
        raise NotImplementedError

    def apply(
        self, rid: str, version: int, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> list[Message] | None:
        """The messages one change of row `rid` sends (None: nothing).

        `old`/`new` are the row's values before and after (None: absent); the index's
        `old`/`new` hold its keys before and after.
        """
        raise NotImplementedError
