"""The outermost layer of the app: one JSON log line and the metrics of every request.

Invariant: each HTTP request produces exactly one access line (method, route template,
path, status, tenant when known, duration) and one metrics observation, whatever
happens below, including an unexpected exception, which becomes `500 internal` here.
Headers and the query string are never logged, so a token cannot reach the logs.
Lines are structured records (`cluster.logfmt.emit`): the process's formatter renders
them in the one format of every lq process (`{"ts", "level", "msg", ...}`), off the
event loop.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.logfmt import emit

from .context import LOG_KEY
from .errors import internal_error_response
from .metrics import Metrics
from .routing import ROUTE_KEY

__all__ = ["ACCESS_LOGGER", "ERROR_LOGGER", "AccessMiddleware"]

ACCESS_LOGGER = "lq.gateway.access"
ERROR_LOGGER = "lq.gateway"
_DISCONNECTED = 499  # the client went away before an answer (nginx's convention)


class AccessMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, enabled: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled
        self.access = logging.getLogger(ACCESS_LOGGER)
        self.errors = logging.getLogger(ERROR_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        fields: dict[str, Any] = {}
        scope[LOG_KEY] = fields
        status = _DISCONNECTED
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as e:
            status = 500
            emit(self.errors, logging.ERROR, msg="unhandled exception",
                 method=scope["method"], path=scope["path"], error=repr(e),
                 traceback=traceback.format_exc())
            if not started:
                await internal_error_response()(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get(ROUTE_KEY, "unmatched")
            self.metrics.observe(scope["method"], route, status, elapsed)
            if self.enabled:
                emit(self.access, logging.INFO, msg="request", method=scope["method"],
                     route=route, path=scope["path"], status=status,
                     tenant=fields.get("tenant"), duration_ms=round(elapsed * 1000, 3))
