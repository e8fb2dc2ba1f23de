"""The gap policy on the real gateway, with a scripted shard that loses chosen frames.

A real gateway (uvicorn, in a thread) on a real Redis; the test plays the shards on the
internal wire (DESIGN.md section 5b): it heartbeats as a shard, reads the control stream
the gateway writes to, and publishes delta frames whose counters it controls, so a
frame can be "lost" exactly as a refused or trimmed XADD would lose it. The gateway's
re-send timer is set far out (30 s), so only the gap policy can repair the list in the
time these tests allow.

Cases (each failed on the gateway as shipped before the delivery core, which resynced
only the subscriptions last reset by the incarnation with the gap):
- the first snapshot of a new subscription is lost;
- a new owner's claim `reset` is lost, and nothing else is sent for that subscription.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aredis

from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import DeltaFrame, Storage
from tests.gateway_helpers import ThreadServer, auth, config_for, token
from tests.live_clients import Ws, new_tenant
from tests.redis_servers import RedisServer

Q = {"entity": "tasks", "sort": ["-p"], "limit": 5}
ADMIN = auth(token("ops", scope="lq:admin"))
QUICK = 5.0  # well under the gateway's 30 s re-send timer


class ScriptedShard:
    """Plays one shard incarnation on the internal wire."""

    def __init__(self, redis_url: str, shard_id: str, gateway_id: str) -> None:
        self.id = shard_id
        self.inc = secrets.token_hex(4)
        self.gateway_id = gateway_id
        self.front = Storage.open(StorageSettings(redis_url=redis_url))
        self.raw = aredis.Redis.from_url(redis_url)
        self.membership = self.front.membership
        self.deltas = self.front.deltas
        self.n = 0
        self.ctrl_position = "0-0"

    async def beat(self) -> None:
        await self.membership.heartbeat("shard", self.id, 60_000, b"{}")

    async def leave(self) -> None:
        await self.membership.leave("shard", self.id)

    async def control(self, timeout: float = QUICK) -> dict[str, str]:
        """The next control message sent to this shard."""
        key = self.front.keys.ctrl(self.id)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got: Any = await self.raw.xread({key: self.ctrl_position}, count=1,
                                            block=max(1, int(min(left, 0.2) * 1000)))
            if got:
                entry_id, fields = got[0][1][0]
                self.ctrl_position = entry_id.decode()
                return {k.decode(): v.decode() for k, v in fields.items()}
        raise AssertionError(f"no control message for {self.id} within {timeout} s")

    async def frame(self, p: int, epoch: int, groups: list[tuple[list[str], list[dict[str, Any]]]],
                    *, lose: bool = False) -> None:
        """Publish the next frame; `lose` takes its counter but never writes it."""
        self.n += 1
        if lose:
            return
        frame = DeltaFrame(self.id, self.inc, self.n, p, epoch,
                           tuple((tuple(rids), orjson.dumps(msgs)) for rids, msgs in groups))
        assert await self.deltas.publish([(self.gateway_id, frame)]) == [True]

    async def snapshot(self, rid: str, p: int, epoch: int, rows: list[tuple[str, int]], *,
                       lose: bool = False) -> None:
        msgs: list[dict[str, Any]] = [{"type": "delta", "op": "reset"}]
        for i, (row_id, version) in enumerate(rows):
            msgs.append({"type": "delta", "op": "enter", "id": row_id, "version": version,
                         "row": {"p": version}, "from": -1, "to": i, "cursor": None})
        msgs.append({"type": "delta", "op": "synced", "count": len(rows)})
        await self.frame(p, epoch, [([rid], msgs)], lose=lose)

    async def close(self) -> None:
        await self.front.aclose()
        await self.raw.aclose()


@pytest.fixture(scope="module")
def slow_resend_gateway(redis_standalone: RedisServer) -> Iterator[ThreadServer]:
    server = ThreadServer(config_for(redis_standalone.url, subscribe_timeout=30.0)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def gateway_id(slow_resend_gateway: ThreadServer, standalone_url: str) -> str:
    del standalone_url  # flushed for this test
    async with httpx.AsyncClient(base_url=slow_resend_gateway.url, timeout=10) as http:
        return str((await http.get("/v1/cluster", headers=ADMIN)).json()["gateway"])


@pytest.fixture
async def shards(standalone_url: str, gateway_id: str) -> AsyncIterator[list[ScriptedShard]]:
    made = [ScriptedShard(standalone_url, name, gateway_id) for name in ("sa", "sb")]
    # the flush removed the gateway's stream; it re-creates it when it notices
    deadline = time.monotonic() + QUICK
    while not await made[0].raw.exists(made[0].front.keys.delta(gateway_id)):
        assert time.monotonic() < deadline, "the gateway did not re-create its stream"
        await asyncio.sleep(0.05)
    try:
        yield made
    finally:
        for shard in made:
            await shard.close()


async def subscribe_through(gateway: ThreadServer, shard: ScriptedShard) -> tuple[Ws, str, int]:
    """A WebSocket client subscribed as "a" while `shard` is the only live one: the client,
    the registry id the gateway asked `shard` to serve, and its partition."""
    await shard.beat()
    tenant = new_tenant()
    await asyncio.sleep(1.5)  # the gateway's liveness loop sees it (heartbeat period 1 s)
    ws = await Ws.connect(gateway.url.replace("http", "ws") + "/v1/ws", token(tenant))
    await ws.send({"type": "subscribe", "sub": "a", "query": Q})
    ask = await shard.control()
    assert ask["op"] == "subscribe"
    return ws, ask["rid"], partition_of(tenant, "tasks")


async def test_a_lost_first_snapshot_is_asked_for_again_at_the_next_frame(
    slow_resend_gateway: ThreadServer, shards: list[ScriptedShard]
) -> None:
    sa, _ = shards
    ws, rid, p = await subscribe_through(slow_resend_gateway, sa)
    try:
        await sa.snapshot(rid, p, 7, [("r1", 1)], lose=True)  # frame 1: lost
        await sa.frame(p, 7, [(["nobody"], [{"type": "delta", "op": "synced", "count": 0}])])
        again = await sa.control()  # the gap (frame 2 after nothing) asks again at once
        assert (again["op"], again["rid"]) == ("resync", rid)
        await sa.snapshot(rid, p, 7, [("r1", 1), ("r2", 2)])
        await ws.settle(lambda: "a" in ws.views and ws.views["a"].synced, timeout=QUICK)
        assert [r.id for r in ws.views["a"].current()] == ["r1", "r2"]
    finally:
        await ws.close()


async def test_a_lost_claim_reset_is_asked_for_again_at_the_new_owners_next_frame(
    slow_resend_gateway: ThreadServer, shards: list[ScriptedShard]
) -> None:
    sa, sb = shards
    ws, rid, p = await subscribe_through(slow_resend_gateway, sa)
    try:
        await sa.snapshot(rid, p, 7, [("r1", 1)])
        await ws.settle(lambda: "a" in ws.views and ws.views["a"].synced, timeout=QUICK)
        # sa dies; sb takes the partition over with a newer epoch, and its claim is lost
        await sa.leave()
        await sb.beat()
        await asyncio.sleep(1.5)  # the gateway sees the new live set
        await sb.snapshot(rid, p, 8, [("r1", 1), ("r3", 3)], lose=True)
        # sb's next frame concerns someone else only: the gap must still reach `a`
        await sb.frame(p + 1, 8, [(["nobody"], [{"type": "delta", "op": "synced", "count": 0}])])
        again = await sb.control()
        assert (again["op"], again["rid"]) == ("resync", rid)
        await sb.snapshot(rid, p, 8, [("r1", 1), ("r3", 3)])
        await ws.settle(lambda: [r.id for r in ws.views["a"].current()] == ["r1", "r3"]
                        and ws.views["a"].synced, timeout=QUICK)
    finally:
        await ws.close()
