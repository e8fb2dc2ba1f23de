"""The Python client against a gateway older than state-diff resume, played by a tiny
WebSocket server on loopback: it answers `ready`, and refuses a subscribe that carries
`resume` with `invalid_message`, as gateways before the feature did. The client must
subscribe again without `resume` (a snapshot) instead of ending the view."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lq_client import LiveClient
from websockets.asyncio.server import ServerConnection, serve

Q = {"entity": "tasks", "limit": 5}


class OldGateway:
    """Serves one list of rows; drops every connection once after it is synced."""

    def __init__(self) -> None:
        self.subscribes: list[dict[str, Any]] = []
        self.connections = 0

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(json.dumps({"type": "ready", "tenant": "t"}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "subscribe":
                continue
            self.subscribes.append(message)
            sub = message["sub"]
            if "resume" in message:
                await ws.send(json.dumps({"type": "error", "code": "invalid_message",
                                          "message": "unknown field resume", "sub": sub}))
                continue
            await ws.send(json.dumps({"type": "subscribed", "sub": sub}))
            rows = [{"type": "delta", "sub": sub, "seq": 1, "op": "reset"},
                    {"type": "delta", "sub": sub, "seq": 2, "op": "enter", "id": "a",
                     "version": 1, "row": {}, "from": -1, "to": 0, "cursor": "c"},
                    {"type": "delta", "sub": sub, "seq": 3, "op": "synced", "count": 1}]
            await ws.send(json.dumps(rows))
            if self.connections == 1:
                await asyncio.sleep(0.2)
                await ws.close(1001, "going away")  # the client reconnects and declares


@pytest.fixture
async def old_gateway() -> AsyncIterator[tuple[OldGateway, str]]:
    gateway = OldGateway()
    async with serve(gateway.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield gateway, f"http://127.0.0.1:{port}"


async def test_a_refused_resume_falls_back_to_a_snapshot(
    old_gateway: tuple[OldGateway, str],
) -> None:
    gateway, url = old_gateway
    async with LiveClient(url, token="t.e.s", backoff=(0.05, 0.2)) as lq:
        view = await lq.subscribe(Q)
        assert [r.id for r in view.rows] == ["a"]
        async with asyncio.timeout(10):
            while len(gateway.subscribes) < 3:
                await asyncio.sleep(0.02)
            await view.wait_synced()
        assert "resume" in gateway.subscribes[1]  # it declared its list after the drop ...
        assert "resume" not in gateway.subscribes[2]  # ... and, refused, asked for a snapshot
        assert not view.closed and view.error is None
        assert [r.id for r in view.rows] == ["a"]
