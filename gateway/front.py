"""The one ASGI layer in front of the routes: the stack tap, access, CORS and error answers.

One function frame and one `send` wrapper per HTTP request instead of a middleware per
concern (each frame is resumed at every await of the request, so depth is paid per
Redis round trip and per body chunk). The rules stay in their own modules and are only
called from here: `live/stack.py` (what a WebSocket's transport holds), `access.py` (the
access line and metrics), `cors.py` (origins, preflights, headers), `errors.py` (errors
as answers).

Invariants:
- a WebSocket scope gets its transport and the server's own `send` (`live/stack.py`),
  taken before anything wraps `send`, then goes through starlette's exception
  middleware (`ws_app`), as it did behind the former separate layers;
- an HTTP request produces exactly one access line and one metrics observation, whatever
  happens below (`access.py`); an `Origin` request gets CORS exactly as `cors.py` says;
- an error raised on purpose (`LiveQueryError`, starlette's `HTTPException`) becomes its
  answer (`errors.handled_response`), with the CORS headers of any other answer; one
  raised after the answer started, or any other exception, is logged and counted as a
  500, answered `500 internal` (without CORS headers) when nothing was sent yet;
- lifespan scopes pass straight through.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .access import DISCONNECTED, Access
from .context import LOG_KEY
from .cors import OriginRules, allowed_headers, preflight
from .errors import handled_response, internal_error_response
from .live.stack import SEND_KEY, TRANSPORT_KEY, transport_of

__all__ = ["Front"]

_Headers = list[tuple[bytes, bytes]]
_STARTED = "Caught handled exception, but response already started."  # starlette's words


class Front:
    """The gateway app's outermost layer (pure ASGI: no task or buffering per request)."""

    __slots__ = ("access", "app", "rules", "ws_app")

    def __init__(self, app: ASGIApp, ws_app: ASGIApp, access: Access, rules: OriginRules
                 ) -> None:
        self.app = app  # the router: HTTP errors are answered here
        self.ws_app = ws_app  # the router behind starlette's exception middleware
        self.access = access
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                scope[TRANSPORT_KEY] = transport_of(send)
                scope[SEND_KEY] = send
            await self.ws_app(scope, receive, send)
            return
        start = time.perf_counter()
        fields: dict[str, Any] = {}
        scope[LOG_KEY] = fields
        status = DISCONNECTED
        started = False
        ask, allowed, extra = self._cors(scope)

        async def note(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                if extra is not None:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            try:
                if ask is not None:
                    await preflight(ask, allowed, scope, receive, note)
                else:
                    await self.app(scope, receive, note)
            except Exception as e:
                answer = handled_response(e)
                if answer is None:
                    raise
                if started:
                    raise RuntimeError(_STARTED) from e
                await answer(scope, receive, note)
                e.__traceback__ = None  # a reused exception would pile up tracebacks
        except Exception as e:
            status = 500
            self.access.failed(scope, e)
            if not started:
                await internal_error_response()(scope, receive, send)
        finally:
            self.access.done(scope, status, start, fields)


    def _cors(self, scope: Scope) -> tuple[bytes | None, bool, _Headers | None]:
        """(the origin of a preflight to answer, whether it is allowed, the headers to add
        to the answer); all None or False for a request without `Origin`."""
        origin = _origin(scope)
        if origin is None:
            return None, False, None
        allowed = self.rules.allows(origin.decode("latin-1"))
        if scope["method"] == "OPTIONS" and _asks_preflight(scope):
            return origin, allowed, None
        return None, allowed, allowed_headers(origin) if allowed else None


def _origin(scope: Scope) -> bytes | None:
    """The request's `Origin` (the last one, as a dict of the headers would keep)."""
    found = None
    for name, value in scope["headers"]:
        if name == b"origin":
            found = value
    return None if found is None else bytes(found)


def _asks_preflight(scope: Scope) -> bool:
    return any(name == b"access-control-request-method" for name, _ in scope["headers"])
