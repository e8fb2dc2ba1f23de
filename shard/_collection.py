"""One (tenant, entity) in memory: its rows, its ordered indexes, its views.

Invariants:
- `rows` holds the newest applied version of every live row; a change whose version is
  not newer than what was last applied for its id (a held row, or a remembered delete
  in `_dead`) is ignored and sends nothing. `_dead` is bounded: when it is full the
  oldest delete is forgotten and `_floor` rises to its version, and a change for an id
  neither held nor remembered is ignored unless newer than `_floor`. That is exact as
  long as changes arrive in log order (versions grow along the log) apart from
  redeliveries, which is what a partition's change log gives.
- There is one `SortIndex` per distinct sort of the views, and it is dropped with the
  last view using it; every index holds every row.
- There is one view per distinct `Query.shape`; it exists while it has subscribers.
- A change is offered only to the views `Dispatch` finds for its old and new values;
  views holding the row matched its old values, so they are always among them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cluster.query import CursorSigner, Mode, Query

from ._changes import ChangesView
from ._dispatch import Dispatch
from ._index import RowMap, SortIndex
from ._types import Change, Row, ViewDelta
from ._view import View
from ._window import WindowView

__all__ = ["DEFAULT_MAX_DEAD", "Collection"]

DEFAULT_MAX_DEAD = 100_000


class Collection:
    """The rows of one (tenant, entity) and the views over them."""

    __slots__ = (
        "_clock",
        "_dead",
        "_dispatch",
        "_floor",
        "_indexes",
        "_max_dead",
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
        max_dead: int = DEFAULT_MAX_DEAD,
    ) -> None:
        self.tenant = tenant
        self.entity = entity
        self.rows: RowMap = {}
        self._dead: dict[str, int] = {}
        self._floor = -1
        self._max_dead = max_dead
        self._indexes: dict[str, SortIndex] = {}
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
        return [view.reload() for view in self._views.values()]

    def is_stale(self, rid: str, version: int) -> bool:
        """Whether a change of `rid` at `version` is not newer than what was applied."""
        held = self.rows.get(rid)
        if held is not None:
            return version <= held[0]
        dead = self._dead.get(rid)
        return version <= (self._floor if dead is None else dead)

    def apply(self, change: Change) -> list[ViewDelta]:
        """Apply one change; the deltas of every view it affects (none if stale)."""
        rid, version, new = change.id, change.version, change.values
        if self.is_stale(rid, version):
            return []
        held = self.rows.get(rid)
        old = None if held is None else held[1]
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
            index.update(rid, new)
        out: list[ViewDelta] = []
        for view in self._dispatch.candidates(old, new):
            view.offered += 1
            msgs = view.apply(rid, version, old, new)
            if msgs:
                out.append(view.emit(msgs))
        return out

    def _bury(self, rid: str, version: int) -> None:
        dead = self._dead
        dead.pop(rid, None)
        dead[rid] = version
        if len(dead) > self._max_dead:
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
            index = SortIndex(query.sort_spec, query.sort_key, self.rows)
            self._indexes[query.sort_spec] = index
        index.users += 1
        kind = WindowView if query.mode is Mode.WINDOW else ChangesView
        view = kind(query, index, self.rows, self._signer)
        view.refresh()
        self._views[query.shape] = view
        self._dispatch.add(view, query.where)
        self.last_used = self._clock()
        return view

    def release(self, view: View) -> None:
        """Drop `view` if it has no subscribers left (and its index if no view uses it)."""
        if view.subscribers or self._views.get(view.query.shape) is not view:
            return
        del self._views[view.query.shape]
        self._dispatch.remove(view)
        view.index.users -= 1
        if not view.index.users:
            del self._indexes[view.index.spec]
        self.last_used = self._clock()

    def touch(self) -> None:
        self.last_used = self._clock()

    @property
    def has_views(self) -> bool:
        return bool(self._views)

    def views(self) -> list[View]:
        return list(self._views.values())

    def index_specs(self) -> list[str]:
        return list(self._indexes)

    def stats(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "deletes_remembered": len(self._dead),
            "views": len(self._views),
            "indexes": len(self._indexes),
        }
