"""One (tenant, entity) in memory: its rows, its ordered indexes, its views.

Invariants:
- `rows` holds the newest applied version of every live row; a change whose version is
  not newer than what was last applied for its id (a held row, or a remembered delete
  in `_dead`) is ignored and sends nothing. `_dead` is bounded: when it is full the
  oldest delete is forgotten and `_floor` rises to its version, and a change for an id
  neither held nor remembered is ignored unless newer than `_floor`. That is exact as
  long as changes arrive in log order (versions grow along the log) apart from
  redeliveries, which is what a partition's change log gives.
- There is one `SortIndex` per distinct sort of the views, and one `PointIndex` per
  column that views are filed under by value; each is dropped with the last view using
  it, and every index holds every row.
- There is one view per distinct `Query.shape`; it exists while it has subscribers.
- A change is offered only to the views `Dispatch` finds for its old and new values;
  views holding the row matched its old values, so they are always among them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from cluster import logpos
from cluster.query import CursorSigner, Mode, Query

from ._changes import ChangesView
from ._dispatch import Dispatch, Plan, plan_for
from ._index import RowMap, SortIndex
from ._points import PointIndex
from ._types import Change, MatcherSettings, Row, ViewDelta
from ._view import SnapshotCache, View
from ._window import WindowView

__all__ = ["Collection"]


class Collection:
    """The rows of one (tenant, entity) and the views over them."""

    __slots__ = (
        "_cache",
        "_clock",
        "_dead",
        "_dispatch",
        "_floor",
        "_indexes",
        "_points",
        "_settings",
        "_signer",
        "_views",
        "entity",
        "last_used",
        "rows",
        "tenant",
    )

    def __init__(
        self,
        tenant: str,
        entity: str,
        signer: CursorSigner,
        clock: Callable[[], float],
        settings: MatcherSettings,
        cache: SnapshotCache,
    ) -> None:
        self.tenant = tenant
        self._cache = cache
        self.entity = entity
        self.rows: RowMap = {}
        self._dead: dict[str, int] = {}
        self._floor = -1
        self._settings = settings
        self._indexes: dict[str, SortIndex] = {}
        self._points: dict[tuple[str, ...], PointIndex] = {}
        self._views: dict[bytes, View] = {}
        self._dispatch: Dispatch[View] = Dispatch()
        self._signer = signer
        self._clock = clock
        self.last_used = clock()

    # -- rows

    def load(self, rows: Iterable[Row]) -> list[ViewDelta]:
        """Replace every row (and forget deletes); views are recomputed and reset."""
        self.rows.clear()
        self._dead.clear()
        self._floor = -1
        for row in rows:
            held = self.rows.get(row.id)
            if held is None or row.version > held[0]:
                self.rows[row.id] = (row.version, row.values)
        for index in self._indexes.values():
            index.rebuild(self.rows)
        for points in self._points.values():
            points.rebuild(self.rows)
        return [view.reload() for view in self._views.values()]

    def is_stale(self, rid: str, version: int) -> bool:
        """Whether a change of `rid` at `version` is not newer than what was applied."""
        held = self.rows.get(rid)
        if held is not None:
            return version <= held[0]
        dead = self._dead.get(rid)
        return version <= (self._floor if dead is None else dead)

    def gone(self, rid: str) -> int | None:
        """The version of the remembered delete of `rid` (None: not remembered)."""
        return self._dead.get(rid)

    def apply(self, change: Change) -> list[ViewDelta]:
        """Apply one change; the deltas of every view it affects (none if stale)."""
        rid, version, new = change.id, change.version, change.values
        held = self.rows.get(rid)
        if held is None:
            if self.is_stale(rid, version):
                return []
            old = None
        elif version <= held[0]:  # `is_stale` of a held row, without a second lookup
            return []
        else:
            old = held[1]
        if new is None:
            self._bury(rid, version)
            if held is None:
                return []
            del self.rows[rid]
        else:
            if held is None:
                self._dead.pop(rid, None)
            self.rows[rid] = (version, new)
        for index in self._indexes.values():
            index.update(rid, old, new)
        for points in self._points.values():
            points.update(rid, old, new)
        out: list[ViewDelta] = []
        pos = logpos.encode(change.stream_id, version) if change.stream_id else None
        for view in self._dispatch.candidates(old, new):
            view.offered += 1
            msgs = view.apply(rid, version, old, new)
            if msgs:
                if pos is not None and view.stamps_pos:
                    msgs[-1]["pos"] = pos  # a fresh message of this view's own
                out.append(view.emit(msgs))
        return out

    def _bury(self, rid: str, version: int) -> None:
        dead = self._dead
        dead.pop(rid, None)
        dead[rid] = version
        if len(dead) > self._settings.max_dead:
            oldest = next(iter(dead))
            self._floor = max(self._floor, dead.pop(oldest))

    # -- views

    def view(self, query: Query) -> View:
        """The view of `query`'s shape, created (and filled) if there is none."""
        view = self._views.get(query.shape)
        if view is not None:
            return view
        index = self._indexes.get(query.sort_spec)
        if index is None:
            index = SortIndex(query, self._signer, self.rows)
            self._indexes[query.sort_spec] = index
        index.users += 1
        plan = plan_for(query.where)
        kind = WindowView if query.mode is Mode.WINDOW else ChangesView
        # orjson returns its output in a 4 KiB buffer; a shape is kept as long as its
        # view, so keep an exact-size copy of it.
        query = dataclasses.replace(query, shape=bytes(memoryview(query.shape)))
        view = kind(query, index, self.rows, self._settings, self._cache, self._by_value(plan))
        view.refresh()
        self._views[query.shape] = view
        self._dispatch.add(view, plan)
        self.last_used = self._clock()
        return view

    def _by_value(self, plan: Plan) -> tuple[PointIndex, frozenset[bytes]] | None:
        """The hash index of a view filed under points (made if it is the first)."""
        if plan.path is None or plan.interval is not None:
            return None
        points = self._points.get(plan.path)
        if points is None:
            points = self._points[plan.path] = PointIndex(plan.path, self.rows)
        points.users += 1
        return points, plan.points

    def release(self, view: View) -> None:
        """Drop `view` if it has no subscribers left (and its index if no view uses it)."""
        if view.subscribers or self._views.get(view.query.shape) is not view:
            return
        del self._views[view.query.shape]
        self._dispatch.remove(view)
        view.close()
        view.index.users -= 1
        if not view.index.users:
            del self._indexes[view.index.spec]
        if view.points is not None:
            points = view.points[0]
            points.users -= 1
            if not points.users:
                del self._points[points.path]
        self.last_used = self._clock()

    def touch(self) -> None:
        self.last_used = self._clock()

    @property
    def has_views(self) -> bool:
        return bool(self._views)

    def views(self) -> list[View]:
        return list(self._views.values())

    def sort_index(self, spec: str) -> SortIndex | None:
        """The ordered index of sort `spec`, if a view uses that sort (read only)."""
        return self._indexes.get(spec)

    def index_specs(self) -> list[str]:
        return list(self._indexes)

    def verify(self) -> None:
        """Check every invariant above against the rows (slow: for tests and debugging)."""
        assert not self._dead.keys() & self.rows.keys(), "a held row is also remembered dead"
        for spec, index in self._indexes.items():
            assert spec == index.spec and index.users > 0
            index.verify(self.rows)
        for points in self._points.values():
            assert points.users > 0
            points.verify(self.rows)
        for shape, view in self._views.items():
            assert shape == view.query.shape and view.subscribers
            assert self._indexes[view.query.sort_spec] is view.index
            view.verify()

    def stats(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "deletes_remembered": len(self._dead),
            "views": len(self._views),
            "indexes": len(self._indexes),
            "value_indexes": len(self._points),
        }
