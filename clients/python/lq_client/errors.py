"""The client's exceptions: one root, one class per kind of answer a caller acts on.

Standard library only. Every error the client raises on purpose is a `LiveError`
carrying the protocol's error `code` (PROTOCOL.md sections 3 and 7), its `message`,
the HTTP `status` when there was one, the `sub` of the subscription it concerns (None
for the connection or a data call), for a failed precondition the row's current
`version`, and for a write answered `unavailable` after its request reached Redis
`outcome == "unknown"` (PROTOCOL.md section 7: it may have been applied).
`error_for` is the one map from a code (or, failing that, an HTTP status or a WebSocket
close code) to a class; nothing else picks classes.

    LiveError                 root; also any code not listed below (`internal`)
    ├── Unauthorized          unauthorized: HTTP 401, close 4401/4408
    ├── Forbidden             forbidden: HTTP 403, close 4403, a read scope missing
    ├── InvalidQuery          invalid_query
    ├── InvalidRequest        invalid_request, invalid_row, too_large, invalid_message,
    │                         unknown_subscription, duplicate_subscription
    ├── NotFound              not_found
    ├── PreconditionFailed    precondition_failed (`version`: the current one, or None)
    ├── LimitExceeded         too_many_subscriptions
    │   └── RateLimited       rate_limited
    └── Unavailable           unavailable, overloaded (close 1013); no gateway given
                              answered, or what answered is not an lq gateway
"""

from __future__ import annotations

__all__ = [
    "Forbidden",
    "InvalidQuery",
    "InvalidRequest",
    "LimitExceeded",
    "LiveError",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class LiveError(Exception):
    """An error of lq (an answer of the server, or no answer): `code` is the protocol's."""

    def __init__(self, code: str, message: str, *, sub: str | None = None,
                 status: int | None = None, version: int | None = None,
                 outcome: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.sub = sub
        self.status = status
        self.version = version
        self.outcome = outcome


class Unauthorized(LiveError):
    """The token is missing, malformed, expired or signed with another key."""


class Forbidden(LiveError):
    """The token is valid but lacks the scope (or is for another tenant on refresh)."""


class InvalidQuery(LiveError):
    """The query, cursor or reanchor is invalid; the message names the part at fault."""


class InvalidRequest(LiveError):
    """A malformed request that is not a query: entity, id, row, body or message."""


class NotFound(LiveError):
    """No such row (for this tenant)."""


class PreconditionFailed(LiveError):
    """`if_match` / `create_only` failed; `version` is the row's current one, or None."""


class LimitExceeded(LiveError):
    """Over a configured limit of the gateway (e.g. subscriptions per connection)."""


class RateLimited(LimitExceeded):
    """Over a configured rate; try again later."""


class Unavailable(LiveError):
    """No gateway given answered as an lq gateway, or the cluster cannot serve now
    (Redis unreachable, overloaded, no snapshot in time). Nothing was written, unless
    `outcome == "unknown"`: the write reached Redis and its reply was lost, so it may
    have been applied (read the row back, or retry with `if_match`)."""


_BY_CODE: dict[str, type[LiveError]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "invalid_query": InvalidQuery,
    "invalid_request": InvalidRequest,
    "invalid_row": InvalidRequest,
    "too_large": InvalidRequest,
    "invalid_message": InvalidRequest,
    "unknown_subscription": InvalidRequest,
    "duplicate_subscription": InvalidRequest,
    "not_found": NotFound,
    "precondition_failed": PreconditionFailed,
    "too_many_subscriptions": LimitExceeded,
    "rate_limited": RateLimited,
    "unavailable": Unavailable,
    "overloaded": Unavailable,
}
_BY_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found",
              412: "precondition_failed", 429: "rate_limited", 503: "unavailable"}
# WebSocket close codes of PROTOCOL.md section 4 that say why, as error codes.
CLOSE_CODES = {4401: "unauthorized", 4408: "unauthorized", 4403: "forbidden",
               1013: "overloaded"}


def error_for(code: str | None, message: str, *, sub: str | None = None,
              status: int | None = None, version: int | None = None,
              outcome: str | None = None) -> LiveError:
    """The typed error for a protocol code; without one, for the HTTP status."""
    if code is None:
        code = _BY_STATUS.get(status or 0, "internal")
    cls = _BY_CODE.get(code, LiveError)
    return cls(code, message, sub=sub, status=status, version=version, outcome=outcome)
