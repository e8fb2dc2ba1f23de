"""No lost first write (PROTOCOL.md section 3, rule 6), on real shard and gateway
processes: writers write while many subscriptions open; for each subscription, every
write acknowledged after its `subscribed` arrived is in its list at the end, and its
only reset is the first one (nothing was repaired by a later snapshot).

Bounded: 3 tenants (so more than one partition and both shards), 48 subscriptions over
6 WebSockets, writers that stop after 3 s or 300 writes each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, new_tenant, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

TENANTS = 3
SOCKETS_PER_TENANT = 2
SUBS_PER_SOCKET = 8
WRITES_MAX = 300
WRITE_SECONDS = 3.0
Q = {"entity": "hammer", "sort": ["id"], "limit": 1000}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_shard("shard-1")
        c.start_gateway()
        c.start_gateway()
        c.wait_ready()
        yield c


class _Stamped(Ws):
    """A Ws that notes when each `subscribed` arrived (monotonic, after the frame)."""

    subscribed_at: dict[str, float]

    async def read(self, timeout: float = 5.0) -> list[dict[str, object]]:
        out = await super().read(timeout)
        now = time.monotonic()
        for m in out:
            if m.get("type") == "subscribed":
                self.subscribed_at.setdefault(str(m["sub"]), now)
        return out


async def _writer(http: httpx.AsyncClient, tok: str, acked: dict[str, float],
                  stop: asyncio.Event) -> None:
    deadline = time.monotonic() + WRITE_SECONDS
    for i in range(WRITES_MAX):
        if stop.is_set() or time.monotonic() > deadline:
            break
        rid = f"w{i:04d}"
        r = await http.put(f"/v1/entities/hammer/rows/{rid}", json={"i": i}, headers=auth(tok))
        assert r.status_code == 200, r.text
        acked[rid] = time.monotonic()


async def _reader(ws: _Stamped, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await ws.read(0.2)
        except TimeoutError:
            pass


async def _opener(ws: _Stamped, prefix: str) -> None:
    for j in range(SUBS_PER_SOCKET):
        await ws.send({"type": "subscribe", "sub": f"{prefix}{j}", "query": Q})
        await asyncio.sleep(0.15)


async def test_no_write_acknowledged_after_subscribed_is_lost(cluster: LiveCluster) -> None:
    tenants = [new_tenant() for _ in range(TENANTS)]
    toks = [token(t) for t in tenants]
    sockets: list[tuple[int, _Stamped]] = []
    for k, tok in enumerate(toks):
        for g in range(SOCKETS_PER_TENANT):
            plain = await Ws.connect(cluster.ws_url(g % len(cluster.gateways)), tok)
            ws = _Stamped(plain.ws)
            ws.subscribed_at = {}
            sockets.append((k, ws))
    acked: list[dict[str, float]] = [{} for _ in tenants]
    stop_readers, stop_writers = asyncio.Event(), asyncio.Event()
    readers = [asyncio.create_task(_reader(ws, stop_readers)) for _, ws in sockets]
    https = [httpx.AsyncClient(base_url=cluster.url(k % 2), timeout=30) for k in range(TENANTS)]
    try:
        writers = [asyncio.create_task(_writer(https[k], toks[k], acked[k], stop_writers))
                   for k in range(TENANTS)]
        await asyncio.sleep(0.1)  # the writers are under way before the first subscribe
        await asyncio.gather(*(_opener(ws, f"s{n}-") for n, (_, ws) in enumerate(sockets)))
        await asyncio.gather(*writers)
        for n, (k, ws) in enumerate(sockets):
            subs = [f"s{n}-{j}" for j in range(SUBS_PER_SOCKET)]

            def announced(ws: _Stamped = ws, subs: list[str] = subs) -> bool:
                return all(s in ws.subscribed_at for s in subs)

            await wait_for(announced)
            for sub in subs:
                after = {rid for rid, t in acked[k].items() if t > ws.subscribed_at[sub]}

                def holds(ws: _Stamped = ws, sub: str = sub, after: set[str] = after) -> bool:
                    view = ws.views.get(sub)
                    return (view is not None and view.synced
                            and after <= {r.id for r in view.current()})

                try:
                    await wait_for(holds, timeout=10)
                except AssertionError:
                    view = ws.views.get(sub)
                    held = {r.id for r in view.current()} if view else set()
                    raise AssertionError(
                        f"{sub}: lost {sorted(after - held)}\n{cluster.logs()}") from None
                resets = [m for m in ws.deltas if m["sub"] == sub and m["op"] == "reset"]
                assert [m["reason"] for m in resets] == ["subscribe"], resets
        # the hammer really happened around `subscribed`: writes on both sides of it
        stamps = [t for _, ws in sockets for t in ws.subscribed_at.values()]
        times = [t for a in acked for t in a.values()]
        assert min(times) < min(stamps) and max(times) > max(stamps)
    finally:
        stop_writers.set()
        stop_readers.set()
        await asyncio.gather(*readers, return_exceptions=True)
        for _, ws in sockets:
            await ws.close()
        for h in https:
            await h.aclose()
