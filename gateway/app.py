"""The ASGI app factory: routes, error handlers, access logs and metrics, one lifespan.

Invariant: `create_app` does no I/O; the lifespan opens the Redis client (and loads the
cursor key) at startup and closes the client at shutdown, so every resource has one
owner. Errors are answered in one place (`errors`), requests are logged and counted in
one place (`access`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from cluster.errors import LiveQueryError

from .access import AccessMiddleware
from .batch import batch_routes
from .context import Context, GatewayConfig
from .errors import error_response, http_error_response
from .ops import ops_routes
from .query import query_routes
from .rows import row_routes

__all__ = ["create_app"]


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LiveQueryError)
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return http_error_response(exc)


def create_app(config: GatewayConfig) -> Starlette:
    """A gateway app for `config`; serve it with any ASGI server (uvicorn in `lq gateway`)."""
    ctx = Context(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ctx.open()
        try:
            yield
        finally:
            await ctx.close()

    routes = [*row_routes(ctx), *query_routes(ctx), *batch_routes(ctx), *ops_routes(ctx)]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessMiddleware, metrics=ctx.metrics, enabled=config.gateway.access_log)
        ],
        exception_handlers={LiveQueryError: _on_error, HTTPException: _on_http_error},
        lifespan=lifespan,
    )
    app.state.lq = ctx
    return app
