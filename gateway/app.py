"""The ASGI app factory: routes, error handlers, access logs and metrics, one lifespan.

Invariant: `create_app` does no I/O; the lifespan opens the storage front (and loads the
cursor key) at startup, starts the live side's loops in one TaskGroup, and at shutdown
drains the live side, stops those loops with `cluster.loops.cancel_all` (which cancels
again a loop whose cancellation Python 3.11 lost) and closes the storage front (its
command client and the live side's blocking readers), so every resource and task has
one owner. Errors are answered in one place (`errors`), requests
are logged and counted in one place (`access`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from cluster.errors import LiveQueryError
from cluster.loops import cancel_all

from .access import Access
from .context import Context, GatewayConfig
from .cors import OriginRules
from .errors import error_response, http_error_response
from .front import Front
from .http.assets import asset_routes
from .http.batch import batch_routes
from .http.body import read_json
from .http.cluster_view import LiveCollector, cluster_routes
from .http.ops import ops_routes
from .http.query import query_routes
from .http.rows import row_routes
from .http.tickets import ticket_routes
from .live.poll import PollHandles, poll_routes
from .live.service import LiveService
from .live.sse import sse_routes
from .live.sse_streams import SseStreams
from .live.ws import ws_routes

__all__ = ["create_app"]


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LiveQueryError)
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return http_error_response(exc)


class _App(Starlette):
    """Starlette with one layer in front of the router (`front.Front`) instead of its
    error middleware, our three and its exception middleware; the WebSocket scopes keep
    the exception middleware (WebSocket routes, `errors` for their handlers)."""

    def __init__(self, front: tuple[Access, OriginRules], **kwargs: object) -> None:
        self._front = front
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def build_middleware_stack(self) -> ASGIApp:
        access, rules = self._front
        handlers = {LiveQueryError: _on_error, HTTPException: _on_http_error}
        return Front(self.router, ExceptionMiddleware(self.router, handlers=handlers),
                     access, rules)


def create_app(config: GatewayConfig) -> Starlette:
    """A gateway app for `config`; serve it with any ASGI server (uvicorn in `lq gateway`)."""
    ctx = Context(config)
    live = LiveService(ctx)
    streams = SseStreams(live)
    handles = PollHandles(live)
    live.on_drain += [streams.end_all, handles.end_all]
    live.loops += [("sse reaper", streams.reap_once), ("poll reaper", handles.reap_once)]
    ctx.metrics.registry.register(LiveCollector(live.counters))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ctx.open()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = await live.start(group)
                try:
                    yield
                finally:
                    await live.drain()
                    await cancel_all(tasks)
        finally:
            await ctx.close()

    routes = [
        *row_routes(ctx), *query_routes(ctx), *batch_routes(ctx), *ops_routes(ctx, live.unready),
        *cluster_routes(ctx, lambda: live.gateway_id), *ticket_routes(ctx, live.tickets),
        *ws_routes(live), *sse_routes(live, streams), *poll_routes(live, handles, read_json),
        *asset_routes(ctx),
    ]
    app = _App(
        (Access(ctx.metrics, config.gateway.access_log),
         OriginRules.parse(config.gateway.cors_origins)),
        routes=routes,
        lifespan=lifespan,
    )
    app.state.lq = ctx
    app.state.live = live
    return app
