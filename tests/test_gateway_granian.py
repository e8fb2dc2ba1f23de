"""`lq gateway --server granian` (the optional stack): a WebSocket subscriber gets its
snapshot and a live delta, and SIGTERM drains it (close 1001) before the process exits."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

Q = {"entity": "tasks", "sort": ["-p"], "limit": 3}


async def test_a_gateway_under_granian_delivers_and_drains(redis_standalone: RedisServer) -> None:
    with LiveCluster(redis_standalone.url) as cluster:
        cluster.start_shard("shard-0")
        gateway = cluster.start_gateway(LQ_SERVER="granian")
        cluster.wait_ready()
        tok = token(new_tenant())
        async with httpx.AsyncClient(base_url=cluster.url(), headers=auth(tok),
                                     timeout=10) as http:
            ops = [{"op": "put", "entity": "tasks", "id": f"r{i}", "row": {"p": i}}
                   for i in range(5)]
            written = await http.post("/v1/batch", json={"ops": ops})
            assert written.is_success
            assert written.headers.get("server") == "granian"  # it is granian that serves
            ws = await Ws.connect(cluster.ws_url(), tok)
            view = await ws.subscribe("a", Q)
            await ws.synced("a")
            assert [r.id for r in view.current()] == ["r4", "r3", "r2"]
            put = await http.put("/v1/entities/tasks/rows/r9", json={"p": 9})
            assert put.is_success
            await ws.settle(lambda: [r.id for r in view.current()] == ["r9", "r4", "r3"])
            code = await asyncio.to_thread(gateway.terminate)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.read(10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert code == 0, gateway.tail()
