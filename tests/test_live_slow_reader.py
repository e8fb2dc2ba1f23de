"""A stalled WebSocket reader is isolated (issue 16): real shard, gateway and Redis.

A raw WebSocket client with a tiny SO_RCVBUF subscribes, then stops reading (its
transport's reading paused, so the kernel's buffers fill) while a few MB of deltas are
produced for its subscription. Asserted:
- the gateway's bytes queued for it, counted through its outbox, its writer, the
  transport's buffer and the kernel's send queue (`lq_live_queued_bytes_max`, sampled
  from /metrics all along), stay within the configured byte bound plus the slack the
  outbox allows (one group and one frame), and the stack is seen holding bytes;
- it shows up in the metrics: a slow connection, a connection behind, an overflow;
- on reading again it gets `reset` with reason `overflow`, then a snapshot that equals a
  fresh query;
- a second client on the same gateway, reading all along, received every delta in order
  (`ViewState` checks `seq`) with no reset but its first, and ends equal to the query.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from lq_client.view import ViewState

from lq.bench._wsload import frame
from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, fresh, new_tenant, rows_of, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(120)

BOUND = 1024 * 1024  # the gateway's per-connection byte bound in this test
# what the outbox may add to its bound (outbox.py): one group admitted while under it,
# plus the frame in the writer's hands (64 KiB batches); a group is one shard frame's
# deltas for one subscription, which the shard batches per event-loop turn
SLACK = 256 * 1024
LIMIT = 20
Q: dict[str, Any] = {"entity": "tasks", "sort": ["-p"], "limit": LIMIT}
PAD = "x" * 900
WRITES = 4000  # about 4.5 MB of deltas to each subscriber
_SLOW = {"LQ_MEMBER_TTL_MS": "8000", "LQ_LEASE_TTL_MS": "8000", "LQ_LEASE_MARGIN_MS": "1000",
         "LQ_GATEWAY_GRACE_MS": "8000"}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        # Leases and memberships long enough that megabytes of deltas on a busy machine
        # never lapse one (that would be a `failover` reset, which this test is not about).
        c.start_shard("shard-0", **_SLOW)
        c.start_gateway(LQ_OUTBOX_MAX_MESSAGES="100000", LQ_OUTBOX_MAX_BYTES=str(BOUND),
                        LQ_MEMBER_TTL_MS="8000")
        c.wait_ready()
        yield c


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=30) as client:
        yield client


class RawWs(asyncio.Protocol):
    """A raw WebSocket client: upgrade, masked text frames out, frames parsed in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.messages: list[dict[str, Any]] = []
        self.parts: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            assert b" 101 " in head.split(b"\r\n", 1)[0], head
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            fin, opcode, n, at = buf[0] & 0x80, buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                break
            payload, buf = buf[at:at + n], buf[at + n:]
            if opcode in (0x1, 0x0):
                self.parts.append(payload)
                if fin:
                    data = json.loads(b"".join(self.parts))
                    self.parts = []
                    self.messages += data if isinstance(data, list) else [data]
            elif opcode == 0x9:  # ping: answer, as a live client would
                assert self.transport is not None
                self.transport.write(frame(payload, 0xA))
        self.buf = buf

    def send(self, obj: Any) -> None:
        assert self.transport is not None
        self.transport.write(frame(json.dumps(obj).encode()))

    @classmethod
    async def connect(cls, port: int, tok: str) -> RawWs:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        _, conn = await asyncio.get_running_loop().create_connection(cls, sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        assert conn.transport is not None
        conn.transport.write((
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {tok}\r\n\r\n").encode())
        await asyncio.wait_for(conn.upgraded, 10)
        return conn


async def _gauges(http: httpx.AsyncClient) -> dict[str, float]:
    out = {}
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("lq_live_") and not line.startswith("lq_live_resets"):
            name, value = line.split()
            out[name.removesuffix("_total")] = float(value)
    return out


async def test_a_stalled_websocket_reader_is_bounded_and_isolated(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    seed = [{"op": "put", "entity": "tasks", "id": f"r{i}", "row": {"p": i, "pad": PAD}}
            for i in range(20)]
    assert (await http.post("/v1/batch", json={"ops": seed}, headers=auth(tok))).is_success
    reader = await Ws.connect(cluster.ws_url(), tok)
    stalled = await RawWs.connect(cluster.gateways[0].port, tok)
    try:
        await reader.subscribe("a", Q)
        stalled.send({"type": "subscribe", "sub": "s", "query": Q})
        await wait_for(lambda: any(m.get("op") == "synced" for m in stalled.messages))
        before = await _gauges(http)
        assert stalled.transport is not None
        stalled.transport.pause_reading()  # stalled: the kernel buffers fill, then ours

        samples: list[dict[str, float]] = []

        async def sample() -> None:
            while True:
                samples.append(await _gauges(http))
                await asyncio.sleep(0.05)

        async def read_all() -> None:  # the second client keeps reading all along
            while True:
                try:
                    await reader.read(0.5)
                except TimeoutError:
                    pass

        sampler = asyncio.create_task(sample())
        reading = asyncio.create_task(read_all())
        try:
            for batch in range(WRITES // 500):
                ops = [{"op": "put", "entity": "tasks", "id": f"r{i % 20}",
                        "row": {"p": batch * 500 + i + 20, "pad": PAD}} for i in range(500)]
                r = await http.post("/v1/batch", json={"ops": ops}, headers=auth(tok))
                assert r.status_code == 200, r.text
            want = await fresh(http, tok, Q)
            view = reader.views["a"]
            await wait_for(lambda: rows_of(view.current()) == want, 30)
            await asyncio.sleep(0.5)  # the gateway has queued what it will for the stalled
        finally:
            sampler.cancel()
            reading.cancel()
        # the reading client: every delta, in order (ViewState checks seq), no overflow
        assert [m["reason"] for m in reader.deltas if m["op"] == "reset"] == ["subscribe"]
        changes = [m for m in reader.deltas if m["op"] in ("update", "move")]
        assert len(changes) == WRITES, len(changes)

        held = max(s["lq_live_queued_bytes_max"] for s in samples)
        stack = max(s["lq_live_stack_bytes"] for s in samples)
        print(f"stalled reader: at most {held:,.0f} bytes queued, {stack:,.0f} of them "
              f"below the outbox; bound {BOUND:,} + slack {SLACK:,}; {len(samples)} samples")
        assert held <= BOUND + SLACK, held
        assert stack > 0  # the stack's bytes are seen (and counted)
        assert max(s["lq_live_slow_connections"] for s in samples) >= 1
        assert max(s["lq_live_behind_connections"] for s in samples) >= 1
        assert samples[-1]["lq_live_overflows"] > before["lq_live_overflows"]

        # reading again: reset (overflow), then a snapshot equal to a fresh query
        stalled.transport.resume_reading()
        sview = ViewState(True, LIMIT)
        reasons: list[str] = []

        def caught_up() -> bool:
            for m in stalled.messages:
                if m.get("type") == "delta" and m["sub"] == "s":
                    if m["op"] == "reset":
                        reasons.append(m["reason"])
                    sview.apply(m)  # checks seq: what was dropped was never numbered
            stalled.messages.clear()
            return "overflow" in reasons and sview.synced

        await wait_for(caught_up, 30)
        await asyncio.sleep(0.3)
        caught_up()  # anything after the snapshot (no writes are left to come)
        assert reasons[:2] == ["subscribe", "overflow"], reasons
        assert rows_of(sview.current()) == want
        after = await _gauges(http)
        assert after["lq_live_behind_connections"] == 0
        resets = (await http.get("/metrics")).text
        assert 'lq_live_resets_total{reason="overflow"}' in resets
    finally:
        await reader.close()
        if stalled.transport is not None:
            stalled.transport.close()
