"""The shard's `Engine` over in-memory doubles of its ports (tests/shard_doubles.py).

The real `Engine`, `Matcher`, `Publisher` and `TailLoop` run against a `MemoryStore`
(rows and change logs), a `MemoryRegistry` and a `MemoryFrames` delta sink; no Redis,
no processes. Every frame published is decoded and applied, by PROTOCOL.md section 3,
to one simulated client per registry id, which must then equal a fresh query by the
plain-Python oracle (lq/chaos/oracle.py). The real-Redis multi-process tests
(test_shard_convergence, _failover, ...) prove the same engine inside real shards.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from cluster.messages import Registration
from cluster.partition import partition_of
from cluster.query import CursorSigner
from cluster.settings import QueryLimits
from lq.chaos.oracle import oracle_query
from shard import Matcher
from shard.runtime.clock import RedisClock
from shard.runtime.engine import Engine
from shard.runtime.events import Events
from shard.runtime.loop_tail import TailLoop
from shard.runtime.publisher import Publisher
from storage import Loaded
from tests.shard_doubles import MemoryFrames, MemoryRegistry, MemoryStore

T, E = "t", "tasks"
P = partition_of(T, E)
SIGNER = CursorSigner(b"e" * 32)
GW, GW2 = "gw-1", "gw-2"
OPEN_BY_PRIO = {"entity": E, "where": {"status": "open"}, "sort": ["-prio"], "limit": 3}
QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "gw-1.1": (GW, OPEN_BY_PRIO),
    "gw-1.2": (GW, {"entity": E, "sort": ["prio"], "limit": 5}),
    "gw-1.3": (GW, {"entity": E, "where": {"prio": {"$gte": 3}}, "sort": ["-prio"],
                    "limit": 2}),
    "gw-1.4": (GW, {"entity": E, "where": {"status": "open"}, "mode": "changes",
                    "limit": 100}),
    "gw-2.1": (GW2, OPEN_BY_PRIO),  # the same view as gw-1.1, another gateway
}


class Client:
    """One subscription as its client holds it; checks every message it applies."""

    def __init__(self, query: dict[str, Any]) -> None:
        self.query = query
        self.window = query.get("mode", "window") == "window"
        self.items: dict[str, tuple[int, dict[str, Any]]] = {}
        self.order: list[str] = []  # window mode: ids in window order
        self.epoch: int | None = None
        self.resets = 0
        self.messages = 0

    def apply(self, msgs: list[dict[str, Any]], epoch: int) -> None:
        for msg in msgs:
            self.messages += 1
            op = msg["op"]
            if op == "reset":
                assert self.epoch is None or epoch >= self.epoch
                self.epoch, self.items, self.order = epoch, {}, []
                self.resets += 1
                continue
            assert epoch == self.epoch, f"{op} under epoch {epoch}, reset under {self.epoch}"
            if op == "synced":
                assert msg["count"] == len(self.items)
                continue
            version = self.items.get(msg["id"], (0, {}))[0]
            if op in ("update", "move", "unmatch"):
                assert msg["version"] >= version, f"{op} {msg['id']} went back"
            if self.window:
                self._window(op, msg)
            else:
                self._changes(op, msg)

    def _window(self, op: str, msg: dict[str, Any]) -> None:
        rid, src, dst = msg["id"], msg["from"], msg["to"]
        if op == "leave":
            assert self.order[src] == rid and dst == -1
            del self.order[src]
            del self.items[rid]
            return
        if op == "enter":
            assert src == -1 and rid not in self.items
        else:
            assert op in ("move", "update") and self.order[src] == rid
            assert (src == dst) == (op == "update")
            del self.order[src]
        self.order.insert(dst, rid)
        self.items[rid] = (msg["version"], msg["row"])

    def _changes(self, op: str, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        if op == "unmatch":
            del self.items[rid]
            return
        assert (op == "match") == (rid not in self.items), f"{op} {rid}"
        self.items[rid] = (msg["version"], msg["row"])

    def expect(self, store: MemoryStore) -> None:
        rows = store.current(T, E)
        if self.window:
            assert self.order == oracle_query(rows, self.query)
        else:
            assert sorted(self.items) == sorted(oracle_query(rows, {**self.query, "limit": None}))
        held = {r.id: (r.version, r.values) for r in store.rows[(T, E)].values()}
        for rid, item in self.items.items():
            assert item == held[rid]


class Rig:
    """An engine over the doubles, with the tail loop, and a client per registry id."""

    def __init__(self) -> None:
        self.store, self.registry, self.frames = MemoryStore(), MemoryRegistry(), MemoryFrames()
        self.fenced: set[tuple[int, int]] = set()
        events = Events("s0")
        self.publisher = Publisher(self.frames, lambda p, e: (p, e) not in self.fenced,
                                   "s0", "inc0", 1 << 20, events)
        self.engine = Engine(Matcher(SIGNER), self.store, self.registry, self.publisher,
                             SIGNER, QueryLimits(), events)
        self.reclaimed: list[int] = []
        self.tail = TailLoop(feed=self.store, engine=self.engine, count=100, block_ms=0,
                             reclaim=self.reclaimed.append, clock=RedisClock(), events=events)
        self.clients: dict[str, Client] = {}
        self._seen = 0
        self._n: dict[str, int] = {}

    def register(self, rid: str, gateway: str, query: dict[str, Any]) -> None:
        self.registry.put(Registration(rid, T, gateway, query))
        self.clients.setdefault(rid, Client(query)).query = query

    def write(self, row_id: str, values: dict[str, Any] | None) -> None:
        self.store.write(T, E, row_id, values)

    async def deliver(self) -> int:
        """Flush, then apply every new frame; the number of frames."""
        await self.engine.flush()
        new = self.frames.published[self._seen:]
        self._seen = len(self.frames.published)
        for gateway, frame in new:
            assert frame.n == self._n.get(gateway, 0) + 1, "a gap in n"
            self._n[gateway] = frame.n
            for rids, payload in frame.groups:
                for rid in rids:
                    self.clients[rid].apply(orjson.loads(payload), frame.epoch)
        return len(new)

    async def step(self) -> int:
        await self.tail.once()
        return await self.deliver()

    def check(self) -> None:
        for client in self.clients.values():
            client.expect(self.store)


def _values(rng: random.Random) -> dict[str, Any]:
    return {"status": rng.choice(("open", "open", "done")), "prio": rng.randint(0, 5)}


async def _claimed(rows: int = 8, seed: int = 0) -> Rig:
    rig = Rig()
    rng = random.Random(seed)
    for i in range(rows):
        rig.write(f"r{i}", _values(rng))
    for rid, (gateway, query) in QUERIES.items():
        rig.register(rid, gateway, query)
    await rig.engine.claim(P, epoch=7)
    await rig.deliver()
    return rig


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_claim_then_changes_keep_every_subscription_equal_to_a_fresh_query(
    seed: int,
) -> None:
    rig = await _claimed(seed=seed)
    assert all(c.resets == 1 and c.epoch == 7 for c in rig.clients.values())
    assert rig.engine.stats()["partitions"] == 1 and rig.engine.serving() == [P]
    rig.check()
    rng = random.Random(seed)
    for _ in range(120):
        for _ in range(rng.randint(1, 3)):
            row_id = f"r{rng.randint(0, 11)}"
            rig.write(row_id, None if rng.random() < 0.2 else _values(rng))
        await rig.step()
        rig.check()
    assert all(c.resets == 1 for c in rig.clients.values())  # never a re-snapshot


async def test_control_subscribe_is_idempotent_reanchor_resnapshots_unsubscribe_stops() -> None:
    rig = await _claimed()
    part = await rig.engine.settled(P)
    assert part is not None
    await rig.engine.subscribe(part, "gw-1.1", refresh=False)
    assert await rig.deliver() == 0  # already live: a no-op
    rig.register("gw-1.1", GW, {**OPEN_BY_PRIO, "limit": 1})
    await rig.engine.subscribe(part, "gw-1.1", refresh=True)  # reanchor
    await rig.deliver()
    assert rig.clients["gw-1.1"].resets == 2 and len(rig.clients["gw-1.1"].order) <= 1
    rig.check()
    await rig.engine.subscribe(part, "gw-1.9", refresh=False)  # no registration: dropped
    rig.registry.delete(P, "gw-1.2")
    await rig.engine.unsubscribe(part, "gw-1.2")
    heard = rig.clients.pop("gw-1.2").messages
    for i in range(12):
        rig.write(f"r{i}", {"status": "open", "prio": 5})
    await rig.step()
    rig.check()
    assert rig.engine.stats()["subscriptions"] == len(QUERIES) - 1
    assert heard > 0


async def test_a_collection_loaded_mid_stream_replays_from_the_partition_position() -> None:
    """Changes made after the claim's mark but before the collection was loaded come
    both in the load and, again, from the tail: no duplicate, no resurrected delete."""
    rig = Rig()
    rig.write("z", {"status": "open", "prio": 0})
    await rig.engine.claim(P, epoch=3)  # nobody subscribes yet: nothing loaded
    assert not rig.engine.wanted(T, E)
    rig.write("a", {"status": "open", "prio": 1})
    rig.write("b", {"status": "open", "prio": 2})
    rig.write("a", None)
    rig.write("c", {"status": "open", "prio": 3})
    part = await rig.engine.settled(P)
    assert part is not None
    rig.register("gw-1.1", GW, OPEN_BY_PRIO)
    await rig.engine.subscribe(part, "gw-1.1", refresh=False)
    await rig.deliver()
    rig.check()
    before = rig.clients["gw-1.1"].messages
    await rig.step()  # re-delivers a, b, the delete of a, c: all already applied
    assert rig.clients["gw-1.1"].messages == before
    rig.check()


async def test_frames_computed_under_a_fenced_epoch_are_not_published() -> None:
    rig = await _claimed()
    rig.fenced.add((P, 7))
    rig.write("r0", {"status": "open", "prio": 5})
    assert await rig.step() == 0
    assert rig.publisher.stats.fenced == 2  # one frame for each gateway


async def test_a_drop_forgets_every_collection_and_a_new_claim_resets_with_fresh_rows() -> None:
    rig = await _claimed()
    rig.engine.drop(P)
    assert rig.engine.held() == [] and not rig.engine.wanted(T, E)
    assert rig.engine.stats()["subscriptions"] == 0
    rig.write("r1", {"status": "open", "prio": 5})  # while served elsewhere
    rig.write("r2", None)
    await rig.engine.claim(P, epoch=9)
    await rig.deliver()
    assert all(c.resets == 2 and c.epoch == 9 for c in rig.clients.values())
    rig.check()
    rig.engine.drop(P, epoch=8)  # another claim's epoch: nothing happens
    assert rig.engine.held() == [P]


async def test_a_partition_dropped_while_its_collection_loads_keeps_no_collection() -> None:
    """A claim whose load was under way at the drop must not leave the collection behind:
    nothing keeps it current, and the next claim would snapshot its stale rows."""
    rig = Rig()
    for i in range(5):
        rig.write(f"r{i}", {"status": "open", "prio": i})
    for rid, (gateway, query) in QUERIES.items():
        rig.register(rid, gateway, query)
    loading, release = asyncio.Event(), asyncio.Event()
    load = rig.store.load_collection

    async def slow_load(tenant: str, entity: str, *, since: str | None = None) -> Loaded:
        loaded = await load(tenant, entity, since=since)
        loading.set()
        await release.wait()
        return loaded

    rig.store.load_collection = slow_load  # type: ignore[method-assign]
    claim = asyncio.create_task(rig.engine.claim(P, epoch=7))
    await loading.wait()
    rig.engine.drop(P)
    release.set()
    await claim
    assert not rig.engine.wanted(T, E) and rig.engine.held() == []
    rig.store.load_collection = load  # type: ignore[method-assign]
    rig.write("r1", {"status": "open", "prio": 9})  # while served elsewhere
    rig.write("r2", None)
    await rig.engine.claim(P, epoch=9)
    await rig.deliver()
    rig.check()


async def test_a_trimmed_position_is_reclaimed_never_skipped() -> None:
    rig = await _claimed()
    for i in range(3):
        rig.write(f"r{i}", {"status": "open", "prio": 0})
    rig.store.trim(P)
    await rig.tail.once()
    assert rig.reclaimed == [P]


async def test_gone_gateways_lose_their_subscriptions_here() -> None:
    rig = await _claimed()
    assert rig.engine.gateways() == {GW, GW2}
    assert rig.engine.drop_gateways({GW2}) == 1
    assert rig.engine.gateways() == {GW}
    rig.write("r0", {"status": "open", "prio": 5})
    await rig.step()
    assert {gateway for gateway, _ in rig.frames.published[-1:]} == {GW}


async def test_a_bad_registration_is_skipped_and_the_rest_are_served() -> None:
    rig = Rig()
    rig.write("a", {"status": "open", "prio": 1})
    rig.registry.put(Registration("gw-1.0", T, GW, {"entity": E, "sort": 5}))
    rig.register("gw-1.1", GW, OPEN_BY_PRIO)
    await rig.engine.claim(P, epoch=1)
    await rig.deliver()
    assert rig.engine.serves_all([P]) and rig.engine.stats()["subscriptions"] == 1
    rig.check()
