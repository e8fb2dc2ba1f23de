"""Operations endpoints: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`. No token.

Invariant: `/healthz` answers from the process alone; `/readyz` needs Redis (a gateway
stays ready with no live shard, so writes go on while shards recover), probed directly,
past the circuit breaker, so readiness reflects Redis itself; and, while shards are
live, a recent delivery canary delta (`gateway.live.canary`): the 503 says which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from storage import as_unavailable

from ..context import Context
from ..metrics import CONTENT_TYPE
from ..responses import json_response
from ..routing import RawRoute
from .openapi import spec

__all__ = ["ops_routes"]


def ops_routes(ctx: Context,
               unready: Callable[[int], str | None] | None = None) -> list[BaseRoute]:
    """`unready(live shards)` names a fault beyond Redis (the delivery canary), or None."""
    document = spec(ctx.config.gateway, ctx.config.query)

    async def healthz(request: Request) -> Response:
        return json_response({"ok": True})

    async def readyz(request: Request) -> Response:
        timeout = ctx.config.gateway.redis_timeout * 2
        try:
            live = await asyncio.wait_for(ctx.storage().live_shard_count(), timeout)
        except Exception as e:
            fault = as_unavailable(e)
            if fault is None:
                raise
            body = {"ready": False, "error": {"code": fault.code, "message": str(fault)}}
            return json_response(body, 503)
        reason = None if unready is None else unready(live)
        if reason is not None:
            body = {"ready": False, "live_shards": live,
                    "error": {"code": "unavailable", "message": reason}}
            return json_response(body, 503)
        return json_response({"ready": True, "live_shards": live})

    async def metrics(request: Request) -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        return json_response(document)

    return [
        RawRoute("/healthz", healthz, methods=["GET"]),
        RawRoute("/readyz", readyz, methods=["GET"]),
        RawRoute("/metrics", metrics, methods=["GET"]),
        RawRoute("/openapi.json", openapi, methods=["GET"]),
    ]
