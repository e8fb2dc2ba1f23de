"""One JSON log line and the metrics of every HTTP request (called by `front.Front`).

Invariant: each HTTP request produces exactly one access line (method, route template,
path, status, tenant when known, duration) and one metrics observation, whatever
happens below, including an unexpected exception, which is logged here (with its
traceback) and counted as `500 internal`. Headers and the query string are never logged,
so a token cannot reach the logs. Lines are structured records (`cluster.logfmt.emit`):
the process's formatter renders them in the one format of every lq process
(`{"ts", "level", "msg", ...}`), off the event loop.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from starlette.types import Scope

from cluster.logfmt import emit

from .metrics import Metrics
from .routing import ROUTE_KEY

__all__ = ["ACCESS_LOGGER", "DISCONNECTED", "ERROR_LOGGER", "Access"]

ACCESS_LOGGER = "lq.gateway.access"
ERROR_LOGGER = "lq.gateway"
DISCONNECTED = 499
"""The status of a request whose client went away before an answer (nginx's convention)."""


class Access:
    """The access log (when enabled) and the request metrics of one app."""

    __slots__ = ("access", "enabled", "errors", "metrics")

    def __init__(self, metrics: Metrics, enabled: bool = True) -> None:
        self.metrics = metrics
        self.enabled = enabled
        self.access = logging.getLogger(ACCESS_LOGGER)
        self.errors = logging.getLogger(ERROR_LOGGER)

    def failed(self, scope: Scope, error: Exception) -> None:
        """Log an unexpected exception of the request (call from its `except`)."""
        emit(self.errors, logging.ERROR, msg="unhandled exception", method=scope["method"],
             path=scope["path"], error=repr(error), traceback=traceback.format_exc())

    def done(self, scope: Scope, status: int, start: float, fields: dict[str, Any]) -> None:
        """Count the request (started at `perf_counter()` `start`) and log its line."""
        elapsed = time.perf_counter() - start
        route = scope.get(ROUTE_KEY, "unmatched")
        self.metrics.observe(scope["method"], route, status, elapsed)
        if self.enabled:
            emit(self.access, logging.INFO, msg="request", method=scope["method"],
                 route=route, path=scope["path"], status=status,
                 tenant=fields.get("tenant"), duration_ms=round(elapsed * 1000, 3))
