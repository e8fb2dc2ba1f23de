"""The one exception hierarchy of lq.

Every error lq raises on purpose derives from `LiveQueryError`; transports map these
classes to HTTP statuses and WebSocket close codes in one place (in `gateway/`).
"""

from __future__ import annotations

__all__ = [
    "Forbidden",
    "InvalidQuery",
    "InvalidRequest",
    "InvalidRow",
    "LiveQueryError",
    "NoLiveShard",
    "NotFound",
    "OutcomeUnknown",
    "StorageUnavailable",
    "TooLarge",
    "Unauthorized",
    "VersionConflict",
]


class LiveQueryError(Exception):
    """Root of every error lq raises on purpose; `code` is the protocol's error code."""

    code = "internal"


class InvalidQuery(LiveQueryError):
    """A query (or cursor) is invalid; the message names the offending part."""

    code = "invalid_query"

    def __init__(self, part: str, problem: str) -> None:
        super().__init__(f"{part}: {problem}" if part else problem)
        self.part = part
        self.problem = problem


class InvalidRequest(LiveQueryError):
    """Malformed input that is not a query: bad entity name, bad id, bad parameter."""

    code = "invalid_request"


class InvalidRow(LiveQueryError):
    """The row is JSON but not an object, or holds values the store refuses."""

    code = "invalid_row"


class TooLarge(LiveQueryError):
    """A body or row is over its configured limit."""

    code = "too_large"


class NotFound(LiveQueryError):
    """No such row for this tenant."""

    code = "not_found"


class VersionConflict(LiveQueryError):
    """A write precondition failed; `current` is the row's version, or None if absent."""

    code = "precondition_failed"

    def __init__(self, current: int | None) -> None:
        super().__init__(
            "the row's current version does not satisfy the precondition"
            f" (current version: {current})"
        )
        self.current = current


class Unauthorized(LiveQueryError):
    """No valid credentials."""

    code = "unauthorized"


class Forbidden(LiveQueryError):
    """Valid credentials without the needed scope."""

    code = "forbidden"


class NoLiveShard(LiveQueryError):
    """No shard is live to serve a partition."""

    code = "unavailable"


class StorageUnavailable(LiveQueryError):
    """Redis is unreachable (or the circuit breaker is open); nothing was written."""

    code = "unavailable"


class OutcomeUnknown(StorageUnavailable):
    """A request reached Redis and its reply was lost (a broken or timed-out connection):
    it may have been applied. Answered 503 like any `unavailable`, with
    `"outcome": "unknown"` in the error (PROTOCOL.md section 7)."""
