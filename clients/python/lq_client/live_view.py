"""One live view: a subscription's list (`view.ViewState`), its changes and its waits.

Standard library only. Invariants: a resubscribe declares the list (a state-diff
resume; in changes mode its log position) exactly when it was synced, not truncated,
and is trusted (never after a violation); every
message is applied to the list before it is queued for the iterator, so `.rows` is never
behind what an iteration has yielded; the iterator's queue is bounded (`_CHANGES`; past
it the oldest change goes and `missed` counts it, while `.rows` stays whole); a wait
(`wait_synced`) ends with the list synced or with the error that refused the
subscription or the reanchor, never by hanging. The connection (`ViewOwner`) sends its
messages and is told when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from .errors import LiveError, Unavailable
from .view import Row, ViewState

__all__ = ["LiveView", "ViewOwner"]

_CHANGES = 10_000  # changes kept for a view's iterator; the oldest go first past that
_DECLARE = 48 * 1024  # at most this many bytes of declared rows in a subscribe


class _End:
    """Queued once the view ends: the iterator stops there."""


_END = _End()


class ViewOwner(Protocol):
    """What a view needs of its client's connection."""

    async def _send(self, message: dict[str, Any]) -> None: ...

    def _forget(self, view: LiveView) -> None: ...


class LiveView:
    """One subscription: `.rows` is the list now; iterate it for every change."""

    def __init__(self, owner: ViewOwner, sub: str, query: dict[str, Any],
                 check: int | None = None) -> None:
        self.owner = owner
        self.check = check  # seconds between the server's `check` messages, if asked
        self.base = sub
        self.sub = sub
        self.query = dict(query)
        self.state = ViewState(query.get("mode", "window") == "window", query.get("limit"))
        self.changes: asyncio.Queue[dict[str, Any] | LiveError | _End] = asyncio.Queue()
        self.missed = 0
        self.resumes = 0  # reconnects that kept the list (a state-diff resume)
        self.declared = False  # the last subscribe sent declared the list
        self.resume_misses = 0  # reconnects that declared the list but got a reset
        self.restarts = 0  # subscriptions started over after a violation
        self.digest_mismatches = 0  # of those, the list's digest differed (it diverged)
        self.error: LiveError | None = None  # the last error the server sent for it
        self.closed = False
        self.acked = False  # `subscribed` arrived on the current connection
        self.refusals = 0  # resubscribes refused for now (overloaded) since the last ack
        self._limit_at_reset: int | None = None
        self._settled = asyncio.Event()
        self._outcome: LiveError | None = None

    @property
    def rows(self) -> list[Row]:
        return self.state.current()

    @property
    def synced(self) -> bool:
        return self.state.synced

    @property
    def reason(self) -> str:
        """The reason of the last `reset` ("" before any, or when it gave none)."""
        return self.state.reason

    def _subscribe_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "sub": self.sub, "query": self.query}
        if self.check is not None:
            message["check"] = self.check
        pos = self.state.held_pos()  # changes mode: the log position to resume from
        if pos is not None:
            self.declared = True
            message["resume"] = {"pos": pos}
            return message
        rows = self.state.held()
        # the whole message must fit the server's frame maximum (64 KiB by default); an
        # id is JSON-escaped to at most twice its UTF-8 bytes (it has no control chars)
        self.declared = rows is not None and sum(
            2 * len(i.encode()) + 24 for i, _ in rows) < _DECLARE
        if self.declared:
            message["resume"] = {"rows": rows}
        return message

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Until the list equals the query result; the error when the server refused
        the subscription or the last reanchor, `Unavailable` past `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self._settled.wait()
        except TimeoutError:
            raise Unavailable("unavailable", f"no snapshot of {self.sub!r} within "
                              f"{timeout} s", sub=self.sub) from None
        if self._outcome is not None:
            raise self._outcome

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[dict[str, Any]]:
        """Each applied message; raises a refusal that came meanwhile; ends with the view."""
        while not self.closed or not self.changes.empty():
            item = await self.changes.get()
            if isinstance(item, _End):
                return
            if isinstance(item, LiveError):
                raise item
            yield item

    async def reanchor(self, after: str | None, limit: int | None = None) -> None:
        """Slide the window (window mode); `after=None` goes back to the top. Wait for
        the new window with `wait_synced()`."""
        self.query["after"] = after
        message: dict[str, Any] = {"type": "reanchor", "sub": self.sub, "after": after}
        if limit is not None:
            self.query["limit"] = limit
            self._limit_at_reset = limit  # the old window's deltas may come before the reset
            message["limit"] = limit
        self._settled.clear()
        self._outcome = None
        await self.owner._send(message)

    async def unsubscribe(self) -> None:
        """Stop following the query; iterations of the view end."""
        if self.closed:
            return
        self.owner._forget(self)
        await self.owner._send({"type": "unsubscribe", "sub": self.sub})
        self._end()

    # -- called by the client's connection

    def _push(self, item: dict[str, Any] | LiveError | _End) -> None:
        if self.changes.qsize() >= _CHANGES:
            self.changes.get_nowait()
            self.missed += 1
        self.changes.put_nowait(item)

    def _apply(self, message: dict[str, Any]) -> None:
        """Apply one live message (ProtocolViolation leaves the caller to start over)."""
        op = message.get("op")
        if op in ("reset", "resume") and self._limit_at_reset is not None:
            self.state.limit, self._limit_at_reset = self._limit_at_reset, None
        declared = op == "reset" and self.declared and not self.state.started
        self.state.apply(message)
        if op == "resume":
            self.resumes += 1
        elif declared and message.get("reason") == "resume_miss":
            self.resume_misses += 1
        if op == "synced":
            self._outcome = None
            self._settled.set()
        self._push(message)

    def _refused(self, error: LiveError) -> None:
        """The server refused what was asked (subscribe or reanchor): waits raise it,
        and so does the iterator."""
        self.error = error
        self._outcome = error
        self._settled.set()
        self._push(error)

    def _end(self, error: LiveError | None = None) -> None:
        """The view is over (unsubscribed, refused, client closed or its token refused)."""
        if error is not None:
            self._refused(error)
        self.closed = True
        self._push(_END)
        if not self._settled.is_set():
            self._outcome = error or LiveError("closed", f"the view {self.sub!r} was closed",
                                               sub=self.sub)
            self._settled.set()

    def _restart(self, keep: bool = True) -> None:
        """A new subscription on the server: a reset is due, or a resume when the list is
        `keep`able (a reconnect; not a start over, whose list is not trusted)."""
        self.acked = False
        self.state.restart()
        if not keep:
            self.state.resumable = False
