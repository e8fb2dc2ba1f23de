"""The ceiling of `lq bench gateway`: a bare starlette WebSocket broadcast.

Run as `python -m lq.bench._broadcast_app PORT [STACK]`; served by the stack named
(`lq._serving.STACKS`, default uvicorn's websockets-sansio) the way `lq gateway` is.
Every connection to `/ws` joins the audience; `POST /broadcast?n=K` sends K messages
(the size and shape of a live delta) to every connection, one `send_text` per message
per connection, as a minimal app would.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["broadcast_app"]

MESSAGE = (
    '{"type":"delta","sub":"s","seq":%d,"op":"update","id":"r1","version":%d,'
    '"row":{"title":"write the benchmark","status":"open","priority":3},'
    '"from":0,"to":0,"cursor":"AQAGpLZlOsRK0dSrp8-JE3B6-z_d________f____3I5AAE"}'
)


def broadcast_app() -> Starlette:
    audience: set[WebSocket] = set()

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        audience.add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            audience.discard(websocket)

    async def broadcast(request: Request) -> Response:
        n = int(request.query_params.get("n", "1"))
        for i in range(n):
            text = MESSAGE % (i + 1, i + 1)
            for websocket in list(audience):
                try:
                    await websocket.send_text(text)
                except (WebSocketDisconnect, RuntimeError):
                    audience.discard(websocket)
            await asyncio.sleep(0)
        return Response(str(len(audience)))

    return Starlette(routes=[WebSocketRoute("/ws", ws),
                             Route("/broadcast", broadcast, methods=["POST"])])


if __name__ == "__main__":
    from lq._serving import serve_granian, split_stack
    from lq.gateway_cmd import raise_fd_limit

    raise_fd_limit()
    port = int(sys.argv[1])
    server, ws_impl = split_stack(sys.argv[2] if len(sys.argv) > 2 else "websockets-sansio")
    if server == "granian":
        serve_granian(broadcast_app(), "127.0.0.1", port, 4096, 50_000)
    else:
        uvicorn.run(broadcast_app(), host="127.0.0.1", port=port, log_config=None,
                    access_log=False, server_header=False, ws_ping_interval=300.0,
                    ws_ping_timeout=600.0, backlog=4096, ws=ws_impl)
