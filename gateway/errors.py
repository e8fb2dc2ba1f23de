"""The one place where errors become HTTP answers (PROTOCOL.md section 7).

Invariant: every error answer is `{"error": {"code", "message"}}` with the status of the
protocol's table; a failed precondition also carries `"version"` (the current version,
or null). Unknown exceptions are `500 internal` with a message that reveals nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from cluster.errors import (
    Forbidden,
    InvalidQuery,
    InvalidRequest,
    InvalidRow,
    LiveQueryError,
    NoLiveShard,
    NotFound,
    OutcomeUnknown,
    StorageUnavailable,
    TooLarge,
    Unauthorized,
    VersionConflict,
)

from .responses import json_response

__all__ = [
    "CLOSE_CODES",
    "DuplicateSubscription",
    "Gone",
    "Overloaded",
    "RateLimited",
    "TooManySubscriptions",
    "UnknownSubscription",
    "error_body",
    "error_response",
    "handled_response",
    "http_error_response",
    "status_of",
]


class RateLimited(LiveQueryError):
    """Over a configured rate."""

    code = "rate_limited"


class Overloaded(LiveQueryError):
    """This gateway is at a limit, draining, or cannot reach Redis now; try again later."""

    code = "overloaded"


class TooManySubscriptions(LiveQueryError):
    code = "too_many_subscriptions"


class DuplicateSubscription(LiveQueryError):
    code = "duplicate_subscription"


class UnknownSubscription(LiveQueryError):
    code = "unknown_subscription"


class Gone(LiveQueryError):
    """A long-polling handle this gateway does not hold (unknown, expired or foreign)."""

    code = "gone"


# WebSocket close codes (PROTOCOL.md section 4), by reason.
CLOSE_CODES = {
    "going_away": 1001,
    "too_big": 1009,
    "overloaded": 1013,
    "protocol": 4400,
    "unauthorized": 4401,
    "forbidden": 4403,
    "auth_timeout": 4408,
}


_STATUS: tuple[tuple[type[LiveQueryError], int], ...] = (
    (InvalidQuery, 400),
    (InvalidRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (VersionConflict, 412),
    (TooLarge, 413),
    (InvalidRow, 422),
    (Gone, 410),
    (RateLimited, 429),
    (Overloaded, 503),
    (StorageUnavailable, 503),
    (NoLiveShard, 503),
)
_HTTP_CODES = {400: "invalid_request", 404: "not_found", 413: "too_large"}


def status_of(error: LiveQueryError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_body(error: LiveQueryError) -> dict[str, Any]:
    """The `{"code", "message"[, "version"]}` object of an error."""
    body: dict[str, Any] = {"code": error.code, "message": str(error) or error.code}
    if isinstance(error, VersionConflict):
        body["version"] = error.current
    elif isinstance(error, OutcomeUnknown):
        body["outcome"] = "unknown"
    return body


def _json(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": error}, status, headers=headers)


def error_response(error: LiveQueryError) -> Response:
    status = status_of(error)
    if status == 500:
        return _json(500, {"code": "internal", "message": "internal error"})
    headers = {"WWW-Authenticate": 'Bearer realm="lq"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    body = error_body(error)
    if isinstance(error, Overloaded):
        body["code"] = "unavailable"  # the HTTP table's code for 503
    return _json(status, body, headers)


def http_error_response(error: HTTPException) -> Response:
    """Starlette's own errors (no route, method not allowed) in the same JSON shape."""
    status = error.status_code
    code = _HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal")
    message = {
        404: "no such endpoint; see /openapi.json",
        405: "method not allowed on this endpoint",
    }.get(status, error.detail)
    return _json(status, {"code": code, "message": message}, dict(error.headers or {}))


def handled_response(error: Exception) -> Response | None:
    """The answer to an error raised on purpose (ours, or starlette's own); None for a bug."""
    if isinstance(error, LiveQueryError):
        return error_response(error)
    if isinstance(error, HTTPException):
        return http_error_response(error)
    return None


def internal_error_response() -> Response:
    return _json(500, {"code": "internal", "message": "internal error"})
