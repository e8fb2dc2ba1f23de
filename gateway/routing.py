"""Routes matched on the raw, still percent-encoded path, one segment per parameter.

Why: a row id may hold any character but control characters, `/` included, so clients
percent-encode it (`a%2Fb`). Starlette matches on the decoded path, where `a%2Fb` and
`a/b` look alike and an encoded `/` in an entity name would silently change the route.
Here each `{param}` is exactly one raw segment, decoded once as UTF-8; a segment that is
not valid UTF-8 marks the request so the endpoint refuses it with `invalid_request`.
The matched template is put in the scope (`lq.route`) for metrics and logs.

The endpoint is called as `endpoint(Request) -> Response` with nothing around it: its
errors go up to `front.Front`, the one place that answers them for HTTP (starlette's
`request_response` would wrap each call in a second exception layer that, with no
handlers in the scope, only re-raises).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cluster.errors import InvalidRequest

__all__ = ["ROUTE_KEY", "RawRoute", "path_param"]

ROUTE_KEY = "lq.route"
_BAD_KEY = "lq.bad_path"


class RawRoute(Route):
    """A `Route` whose `{name}` parameters are single raw path segments."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]], *,
                 methods: list[str]) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.app = _plain(endpoint)
        self.template = path.split("/")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        parts = path.split("/")
        if len(parts) != len(self.template):
            return Match.NONE, {}
        params: dict[str, str] = {}
        bad: list[str] = []
        for want, got in zip(self.template, parts, strict=True):
            if want.startswith("{"):
                if not got:
                    return Match.NONE, {}
                name = want[1:-1]
                try:
                    params[name] = unquote_to_bytes(got).decode("utf-8")
                except UnicodeDecodeError:
                    params[name] = ""
                    bad.append(name)
            elif want != got:
                return Match.NONE, {}
        child: dict[str, Any] = {
            "endpoint": self.endpoint,
            "path_params": params,
            ROUTE_KEY: self.path,
            _BAD_KEY: bad,
        }
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child


def _plain(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def path_param(scope: Scope, name: str) -> str:
    """A decoded path parameter, or InvalidRequest when it was not valid UTF-8."""
    if name in scope.get(_BAD_KEY, ()):
        raise InvalidRequest(f"the {name} in the path is not valid percent-encoded UTF-8")
    value: str = scope["path_params"][name]
    return value
