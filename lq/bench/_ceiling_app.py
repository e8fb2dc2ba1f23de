"""The ceiling of `lq bench http`: a bare starlette endpoint that does one Redis SET.

Run as `python -m lq.bench._ceiling_app PORT REDIS_URL`; served by uvicorn exactly like
`lq gateway` (same loop, same HTTP parser, no access log), so the only difference from
the gateway is everything the gateway does on top: auth, checks, the write script, logs
and metrics.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage import connect

__all__ = ["ceiling_app"]


def ceiling_app(redis_url: str) -> Starlette:
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = connect(redis_url)
        state["client"] = client
        try:
            yield
        finally:
            await client.aclose()

    async def put(request: Request) -> Response:
        body = await request.body()
        client: object = state["client"]
        await client.set("ceiling:" + request.path_params["id"], body)  # type: ignore[attr-defined]
        return Response(orjson.dumps({"id": request.path_params["id"], "version": 1}),
                        media_type="application/json")

    return Starlette(routes=[Route("/v1/entities/{entity}/rows/{id}", put, methods=["PUT"])],
                     lifespan=lifespan)


if __name__ == "__main__":
    uvicorn.run(
        ceiling_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]),
        log_config=None, access_log=False, server_header=False,
    )
