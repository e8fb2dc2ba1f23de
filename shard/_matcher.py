"""The matcher: every collection of a shard and every subscription over them.

Transport-free: it is fed rows and changes and returns frames; the runtime routes them.
Invariants: each subscriber id belongs to exactly one view; a view exists while it has
subscribers; a collection exists from its first `load` or subscription until it is
evicted, which only an idle one (no views) can be.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from cluster.query import CursorSigner, Query

from ._changes import ChangesView
from ._collection import Collection
from ._resume import resume_frame
from ._types import Change, Frame, MatcherSettings, Row, ViewDelta
from ._view import SnapshotCache, View

__all__ = ["Matcher"]

CollectionKey = tuple[str, str]


class Matcher:
    """Collections, views and subscriptions of one shard; see the module docstring."""

    __slots__ = ("_cache", "_clock", "_collections", "_settings", "_signer", "_subs")

    def __init__(
        self,
        signer: CursorSigner,
        *,
        settings: MatcherSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._signer = signer
        self._clock = clock
        self._settings = settings or MatcherSettings()
        self._cache = SnapshotCache(self._settings.snapshot_cache)
        self._collections: dict[CollectionKey, Collection] = {}
        self._subs: dict[str, tuple[Collection, View]] = {}

    def _collection(self, tenant: str, entity: str) -> Collection:
        coll = self._collections.get((tenant, entity))
        if coll is None:
            coll = Collection(
                tenant, entity, self._signer, self._clock, self._settings, self._cache
            )
            self._collections[(tenant, entity)] = coll
        return coll

    # -- data

    def load(self, tenant: str, entity: str, rows: Iterable[Row]) -> list[ViewDelta]:
        """Fill (or refill) a collection; existing views are reset from the new rows."""
        return self._collection(tenant, entity).load(rows)

    def apply(self, change: Change) -> list[ViewDelta]:
        """Apply one change; the deltas of the views it affects. Unheld collections: []."""
        coll = self._collections.get((change.tenant, change.entity))
        if coll is None:
            return []
        return coll.apply(change)

    # -- subscriptions

    def subscribe(self, sub_id: str, tenant: str, query: Query, route: str = "") -> Frame:
        """Join `query`'s view (made if new); its snapshot. A known `sub_id` moves over."""
        return self.join(sub_id, tenant, query, route).snapshot()

    def join(self, sub_id: str, tenant: str, query: Query, route: str = "") -> View:
        """`subscribe` without making the snapshot (a resume sends none): the view."""
        if sub_id in self._subs:
            self.unsubscribe(sub_id)
        coll = self._collection(tenant, query.entity)
        view = coll.view(query)
        view.join(sub_id, route)
        self._subs[sub_id] = (coll, view)
        return view

    def resume(
        self, sub_id: str, tenant: str, query: Query, route: str, pos: str,
        changed: list[tuple[str, int]], now_pos: str,
    ) -> Frame | None:
        """Join `query`'s view (a changes-mode one) and answer with the log-position
        resume from `pos` (`_resume.resume_frame`; `changed` as read from the log after
        it); None when it cannot resume (a window view, or more rows than `limit`): the
        subscription is joined anyway and `snapshot(sub_id)` serves it."""
        view = self.join(sub_id, tenant, query, route)
        if not isinstance(view, ChangesView):
            return None
        coll = self._subs[sub_id][0]
        return resume_frame(view, pos, changed, now_pos, coll.gone)

    def unsubscribe(self, sub_id: str) -> bool:
        """Leave the subscription's view (dropped when empty); False if unknown."""
        entry = self._subs.pop(sub_id, None)
        if entry is None:
            return False
        coll, view = entry
        view.part(sub_id)
        coll.release(view)
        coll.touch()
        return True

    def reanchor(self, sub_id: str, query: Query) -> Frame:
        """Move a subscription to a new shape (new `after`/`limit`); its fresh snapshot."""
        coll, view = self._subs[sub_id]
        if view.query.shape == query.shape:
            return view.snapshot()
        route = view.subscribers[sub_id]
        return self.subscribe(sub_id, coll.tenant, query, route)

    def snapshot(self, sub_id: str) -> Frame:
        """The current snapshot of a subscription (for a resync); KeyError if unknown."""
        return self._subs[sub_id][1].snapshot()

    def query_of(self, sub_id: str) -> Query | None:
        entry = self._subs.get(sub_id)
        return None if entry is None else entry[1].query

    def view_of(self, sub_id: str) -> View:
        return self._subs[sub_id][1]

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._subs

    def __len__(self) -> int:
        return len(self._subs)

    # -- collections

    def collection(self, tenant: str, entity: str) -> Collection | None:
        return self._collections.get((tenant, entity))

    def idle(self, grace: float) -> list[CollectionKey]:
        """Collections without views, unused for at least `grace` seconds."""
        now = self._clock()
        return [
            key
            for key, coll in self._collections.items()
            if not coll.has_views and now - coll.last_used >= grace
        ]

    def evict(self, tenant: str, entity: str) -> bool:
        """Forget a collection without views; False if it has views or is not held."""
        coll = self._collections.get((tenant, entity))
        if coll is None or coll.has_views:
            return False
        del self._collections[(tenant, entity)]
        return True

    def stats(self) -> dict[str, Any]:
        colls = list(self._collections.values())
        return {
            "collections": len(colls),
            "subscriptions": len(self._subs),
            "views": sum(len(c.views()) for c in colls),
            "rows": sum(len(c.rows) for c in colls),
        }
