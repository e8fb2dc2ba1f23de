"""The live endpoints in the OpenAPI document: `/v1/sse`, `/v1/poll`, `/v1/cluster`.

Invariant: what is described here is what the routes in `sse`, `poll` and
`cluster_view` serve (a test compares the document's paths with the app's routes).
`/v1/ws` is a WebSocket, which OpenAPI cannot describe: see `docs/live.md`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["live_paths"]

_J = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(**statuses: str) -> dict[str, Any]:
    return {s[1:]: {"description": text, "content": {_J: {"schema": _ERROR}}}
            for s, text in statuses.items()}


def _param(name: str, text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text,
            "schema": schema or {"type": "string"}}


_Q = _param("q", "the query (PROTOCOL.md section 2) as URL-encoded JSON")
_RESUME = _param("resume", "window mode: the rows the client holds, a URL-encoded JSON array "
                 "of [id, version] pairs in window order (a state-diff resume, PROTOCOL.md "
                 "sections 5 and 6)")
_TOKEN = _param("token", "the JWT, for clients that cannot send a header")
_REFUSED = _errors(
    s400="invalid_query or invalid_request", s401="unauthorized", s403="forbidden",
    s503="unavailable: the gateway is draining or at a limit, or Redis is away",
)
_MESSAGES = {
    "type": "object", "required": ["poll", "messages"],
    "properties": {"poll": {"type": "string"},
                   "messages": {"type": "array", "items": {"type": "object"}}},
}


def live_paths() -> dict[str, Any]:
    return {
        "/v1/sse": {"get": {
            "operationId": "sse", "summary": "one subscription as Server-Sent Events",
            "parameters": [_Q, _TOKEN, _RESUME,
                           _param("last_event_id", "continue after this event id")],
            "responses": {
                "200": {"description": "the event stream (event: op, id: stream.seq)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                **_REFUSED,
            },
        }},
        "/v1/poll": {
            "get": {
                "operationId": "poll", "summary": "open (q) or continue (poll, after) a poll",
                "parameters": [
                    _Q, _TOKEN, _RESUME, _param("poll", "the handle of an open poll"),
                    _param("after", "the last seq received (acknowledges it)"),
                    _param("wait", "seconds to wait for messages, clamped to 0-60"),
                ],
                "responses": {
                    "200": {"description": "messages after `after` (at most 1000)",
                            "content": {_J: {"schema": _MESSAGES}}},
                    **_REFUSED, **_errors(s410="gone: no such handle on this gateway"),
                },
            },
            "post": {
                "operationId": "openPoll",
                "summary": "open a poll; the body may declare rows too many for a URL",
                "parameters": [_TOKEN],
                "requestBody": {"required": True, "content": {_J: {"schema": {
                    "type": "object", "required": ["query"], "additionalProperties": False,
                    "properties": {
                        "query": {"type": "object"},
                        "resume": {"type": "object", "required": ["rows"],
                                   "additionalProperties": False,
                                   "properties": {"rows": {"type": "array"}}},
                        "wait": {"type": "number"},
                    }}}}},
                "responses": {
                    "200": {"description": "the messages so far, at most up to synced",
                            "content": {_J: {"schema": _MESSAGES}}},
                    **_REFUSED, **_errors(s413="too_large: the body is over the limit"),
                },
            },
            "delete": {
                "operationId": "endPoll", "summary": "end a poll",
                "parameters": [_param("poll", "the handle"), _TOKEN],
                "responses": {
                    "200": {"description": "ended", "content": {_J: {"schema": {
                        "type": "object"}}}},
                    **_errors(s400="invalid_request", s401="unauthorized",
                              s410="gone: no such handle on this gateway"),
                },
            },
        },
        "/v1/cluster": {"get": {
            "operationId": "cluster", "summary": "live shards and gateways (scope lq:admin)",
            "responses": {
                "200": {"description": "shards (partitions, subscriptions), gateways",
                        "content": {_J: {"schema": {"type": "object"}}}},
                **_errors(s401="unauthorized", s403="forbidden", s503="unavailable"),
            },
        }},
    }
