"""The client's one connection as a state machine (standard library only).

    CONNECTING ──ready──▶ OPEN ──dropped──▶ CONNECTING
        │                                      │
        ├──every URL failed once──▶ DOWN ──ready──▶ OPEN
        └──token refused, no new one──▶ FAILED          (from DOWN too)
    any state ──the client closes──▶ CLOSED

Invariant: the connection task is the only writer (`move`), which refuses any other
transition; `subscribe()` and the views only read the state and its `error` (why it is
DOWN or FAILED). DOWN still retries with backoff; FAILED and CLOSED try nothing more.
"""

from __future__ import annotations

import enum

from .errors import LiveError

__all__ = ["Link", "LinkState"]


class LinkState(enum.Enum):
    CONNECTING = "connecting"  # trying the URLs given; not every one has failed yet
    OPEN = "open"  # authenticated (`ready` received): the views are live
    DOWN = "down"  # every URL failed its attempt; retrying with backoff
    FAILED = "failed"  # the token was refused and the callback gave no new one
    CLOSED = "closed"  # the client was closed


_S = LinkState
_MOVES: dict[LinkState, frozenset[LinkState]] = {
    _S.CONNECTING: frozenset({_S.OPEN, _S.DOWN, _S.FAILED, _S.CLOSED}),
    _S.OPEN: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.DOWN: frozenset({_S.OPEN, _S.FAILED, _S.CLOSED}),
    _S.FAILED: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class Link:
    """The state of the connection and, when DOWN or FAILED, the error that says why."""

    def __init__(self) -> None:
        self.state = LinkState.CONNECTING
        self.error: LiveError | None = None

    def move(self, to: LinkState, error: LiveError | None = None) -> None:
        """Go to `to` (staying DOWN updates the error); RuntimeError for a move the
        diagram above does not have."""
        if to is not self.state and to not in _MOVES[self.state]:
            raise RuntimeError(f"connection state {self.state.value} -> {to.value}")
        self.state = to
        self.error = error
