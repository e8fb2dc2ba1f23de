"""Cross-origin requests from browsers (docs/protocol.md section 7, "Browsers on other
origins"): an allow-list of origins, preflights answered, the headers a client reads
exposed. The rules live here; `front.Front` applies them to each request.

Invariants:
- a request without `Origin` passes through untouched (servers, curl, same-origin);
- only an allowed origin ever gets `Access-Control-Allow-Origin`, and it gets its own
  origin back (never `*`, so caches keyed by `Vary: Origin` stay right); credentials are
  tokens and tickets, never cookies, so `Allow-Credentials` is never sent;
- a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, `204`
  for an allowed origin and `403 forbidden` for any other, and never reaches a route;
- rules are parsed once at start-up and matched without regular expressions: `*`, an
  exact origin, or `scheme://host:*` (that host on any port, or none).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from .responses import json_response

__all__ = ["OriginRules", "allowed_headers", "preflight"]

_METHODS = b"GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS"
_HEADERS = b"Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID, Cache-Control"
_EXPOSED = b"ETag, Location, Retry-After"
_MAX_AGE = b"600"


@dataclass(frozen=True, slots=True)
class OriginRules:
    """The parsed `cors_origins` setting."""

    any: bool
    exact: frozenset[str]
    any_port: frozenset[str]  # "scheme://host"

    @classmethod
    def parse(cls, setting: str) -> OriginRules:
        """Rules from a comma-separated list; ValueError naming a malformed entry."""
        any_origin, exact, any_port = False, set(), set()
        for raw in setting.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                any_origin = True
            elif entry == "null":  # file:// pages and sandboxed frames
                exact.add(entry)
            elif entry.endswith(":*"):
                any_port.add(_checked(entry[:-2], entry))
            else:
                exact.add(_checked(entry, entry))
        return cls(any_origin, frozenset(exact), frozenset(any_port))

    @property
    def empty(self) -> bool:
        return not (self.any or self.exact or self.any_port)

    def allows(self, origin: str) -> bool:
        if self.any or origin in self.exact:
            return True
        scheme, sep, rest = origin.partition("://")
        if not sep:
            return False
        host, colon, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
        if colon and not port.isdigit():
            return False
        return f"{scheme}://{host}" in self.any_port


def _checked(origin: str, entry: str) -> str:
    scheme, sep, rest = origin.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest or "*" in rest:
        raise ValueError(
            f"cors_origins: {entry!r} is not an origin: give scheme://host[:port], "
            "scheme://host:* or *"
        )
    return origin


def allowed_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    """The headers added to every answer to an allowed `origin` (not a preflight)."""
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", _EXPOSED),
        (b"vary", b"Origin"),
    ]


async def preflight(origin: bytes, allowed: bool, scope: Scope, receive: Receive, send: Send
                    ) -> None:
    """Answer a preflight: 204 with the allowed methods and headers, or 403 forbidden."""
    if not allowed:
        refused = json_response(
            {"error": {"code": "forbidden", "message": "this origin may not call this "
                       "gateway from a browser (see the gateway's cors_origins)"}}, 403)
        await refused(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 204, "headers": [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", _METHODS),
        (b"access-control-allow-headers", _HEADERS),
        (b"access-control-max-age", _MAX_AGE),
        (b"vary", b"Origin"),
    ]})
    await send({"type": "http.response.body", "body": b""})
