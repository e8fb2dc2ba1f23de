"""Files for browsers: the JavaScript client at `/v1/client.js`, and with `demo` on, the
live demo page at `/` and the development tokens it runs on.

Invariants:
- the files are read once at start-up from the package (`gateway/static/`; the client
  is `clients/js/lq-client.js`, the one copy, linked there) and served with a strong
  `ETag` of their content, so a browser revalidates instead of downloading again;
- no file needs a token; the demo's token endpoint exists only when `demo` is on, and
  then mints short-lived tokens for one tenant (`demo`) and one entity (`demo`) only;
  it needs the HS256 secret, so a gateway that verifies RS256/ES256 refuses `demo`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..auth import issue_token
from ..context import Context
from ..responses import json_response
from ..routing import RawRoute

__all__ = ["DEMO_ENTITY", "DEMO_TENANT", "asset_routes"]

DEMO_TENANT = "demo"
DEMO_ENTITY = "demo"
_DEMO_TOKEN_TTL = 600
_TYPES = {".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8",
          ".css": "text/css; charset=utf-8"}


def _asset(name: str) -> tuple[bytes, str, str]:
    data = (resources.files("gateway") / "static" / name).read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
    return data, etag, _TYPES[name[name.rindex("."):]]


def _serve(name: str) -> Callable[[Request], Awaitable[Response]]:
    data, etag, media_type = _asset(name)

    async def get(request: Request) -> Response:
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, headers=headers, media_type=media_type)

    return get


def asset_routes(ctx: Context) -> list[BaseRoute]:
    routes: list[BaseRoute] = [RawRoute("/v1/client.js", _serve("lq-client.js"),
                                        methods=["GET", "HEAD"])]
    if not ctx.config.gateway.demo:
        return routes
    auth = ctx.config.auth
    if auth.algorithms != ("HS256",) or not auth.jwt_secret:
        raise ValueError("demo: the demo page mints tokens, which needs an HS256 jwt_secret")

    async def demo_token(request: Request) -> Response:
        scopes = f"lq:read:{DEMO_ENTITY} lq:write:{DEMO_ENTITY}"
        token = issue_token(auth.jwt_secret, DEMO_TENANT, scopes, ttl=_DEMO_TOKEN_TTL,
                            tenant_claim=auth.jwt_tenant_claim)
        return json_response({"token": token, "expires_in": _DEMO_TOKEN_TTL},
                             headers={"Cache-Control": "no-store"})

    return [
        *routes,
        RawRoute("/", _serve("demo.html"), methods=["GET", "HEAD"]),
        RawRoute("/demo.js", _serve("demo.js"), methods=["GET", "HEAD"]),
        RawRoute("/demo.css", _serve("demo.css"), methods=["GET", "HEAD"]),
        RawRoute("/v1/demo/token", demo_token, methods=["POST"]),
    ]
