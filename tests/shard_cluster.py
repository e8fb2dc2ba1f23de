"""Multi-process shard tests: real `lq shard` processes, real Redis, a simulated gateway.

`ShardCluster` ties together a `Fleet` of shard processes, a `SimGateway` (both from
`lq.bench._shardsim`, shared with `lq bench cluster`), a `storage.Storage` front (its
`rows` for writes, its `leases` and `membership` for checks; the storage settings are
the ones the shards and the simulated gateway read) and an oracle of the data: every
write's result (version) is recorded, so each subscription's list can be compared with
`oracle_query` over the rows as written once the system is quiet. Timings are short
(see `FAST`): a failover takes about two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cluster.errors import NotFound
from cluster.partition import PARTITIONS, partition_of
from cluster.query import parse_query
from cluster.settings import QueryLimits, StorageSettings
from lq.bench._shardsim import Fleet, SimGateway, SimSub, taken_over
from lq.chaos.oracle import oracle_query
from storage import Lease, Storage

__all__ = [
    "FAST",
    "TTL_S",
    "DataOracle",
    "ShardCluster",
    "collections_of",
    "make_queries",
    "partitions_of",
    "random_row",
    "shard_cluster",
    "taken_over",
    "wait_for",
]

# Short, but forgiving enough for a busy 2-core machine: a shard must stall for 1.5 s
# (TTL - margin - heartbeat) before its leases lapse and are re-claimed with resets.
FAST: dict[str, str] = {
    "LQ_HEARTBEAT_MS": "200",
    "LQ_MEMBER_TTL_MS": "1500",
    "LQ_LEASE_TTL_MS": "2000",
    "LQ_LEASE_MARGIN_MS": "300",
    "LQ_EXPIRY_INTERVAL_MS": "200",
    "LQ_CONTROL_BLOCK_MS": "200",
}
TTL_S = 2.0

_STATUSES = ["open", "doing", "done"]
_NAMES = ["ada", "bob", "cy", "dee", "eve"]
_WORDS = ["alpha", "beta", "gamma", "delta", "apex", "bolt", "cedar", "dune"]


def random_row(rng: random.Random) -> dict[str, Any]:
    """A row over a small domain, so filters and sorts see ties, missing fields, kinds."""
    row: dict[str, Any] = {
        "status": rng.choice(_STATUSES),
        "priority": rng.randint(1, 5),
        "n": rng.randint(0, 1000),
        "title": f"{rng.choice(_WORDS)} {rng.randint(0, 99)}",
    }
    if rng.random() < 0.7:
        row["owner"] = {"name": rng.choice(_NAMES)}
    if rng.random() < 0.2:
        del row["priority"]
    if rng.random() < 0.1:
        row["n"] = float(row["n"]) + 0.5
    return row


_WHERES: list[dict[str, Any]] = [
    {},
    {"status": "open"},
    {"priority": {"$gte": 3}},
    {"status": {"$in": ["open", "doing"]}},
    {"$or": [{"priority": 5}, {"owner.name": "ada"}]},
    {"title": {"$prefix": "a"}},
    {"n": {"$lt": 500}, "status": {"$ne": "done"}},
    {"owner.name": {"$exists": False}},
]
_SORTS: list[list[str]] = [[], ["-priority"], ["priority", "-n"], ["title"], ["owner.name", "-n"],
                           ["-n"]]


def make_queries(rng: random.Random, entity: str, count: int, changes_share: float = 0.25
                 ) -> list[dict[str, Any]]:
    """Valid queries: window and changes mode, sorts, filters, limits."""
    out: list[dict[str, Any]] = []
    for _ in range(count):
        query: dict[str, Any] = {"entity": entity, "where": rng.choice(_WHERES),
                                 "sort": rng.choice(_SORTS)}
        if rng.random() < changes_share:
            query["mode"] = "changes"
        else:
            query["mode"] = "window"
            query["limit"] = rng.choice([1, 3, 5, 10, 20])
        parse_query(query, signer=None, limits=QueryLimits())  # only valid ones
        out.append(query)
    return out


class DataOracle:
    """The rows as written: per (tenant, entity), id -> (version, values or None)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, tuple[int, dict[str, Any] | None]]] = {}
        self.anchors: dict[str, tuple[str, dict[str, Any]]] = {}  # rid -> `after` row

    def record(self, tenant: str, entity: str, row_id: str, version: int,
               values: dict[str, Any] | None) -> None:
        rows = self.data.setdefault((tenant, entity), {})
        old = rows.get(row_id)
        if old is None or version > old[0]:  # concurrent writes: the newer version wins
            rows[row_id] = (version, values)

    def rows(self, tenant: str, entity: str) -> dict[str, tuple[int, dict[str, Any]]]:
        return {i: (v, vals) for i, (v, vals) in self.data.get((tenant, entity), {}).items()
                if vals is not None}

    def ids(self, tenant: str, entity: str) -> list[str]:
        return sorted(self.rows(tenant, entity))

    def expected(self, sub: SimSub) -> list[str]:
        rows = self.rows(sub.tenant, str(sub.query["entity"]))
        pairs = [(i, vals) for i, (_, vals) in rows.items()]
        if sub.mode == "changes":
            return sorted(oracle_query(pairs, {**sub.query, "limit": None}))
        query = {k: v for k, v in sub.query.items() if k != "after"}
        return oracle_query(pairs, query, after=self.anchors.get(sub.rid))

    def diff(self, sub: SimSub) -> str | None:
        """Why `sub`'s list differs from the oracle (None when equal)."""
        if not sub.synced or sub.awaiting:
            return f"{sub.rid}: not synced (awaiting={sub.awaiting}, asks={sub.asks})"
        want = self.expected(sub)
        have = sub.ids()
        if sub.mode == "changes" and sub.truncated:
            if not set(have) <= set(want):
                return f"{sub.rid}: matched {sorted(set(have) - set(want))} not in the result"
        elif have != want:
            return f"{sub.rid} {sub.query}: have {have}, want {want}"
        rows = self.rows(sub.tenant, str(sub.query["entity"]))
        for row_id, item in sub.rows().items():
            version, values = rows.get(row_id, (None, None))
            if item.version != version or item.row != values:
                return (f"{sub.rid}: row {row_id} is v{item.version} {item.row}, "
                        f"written v{version} {values}")
        return None


class ShardCluster:
    """Shards + a simulated gateway + writes with an oracle; see the module docstring."""

    def __init__(self, url: str, log_dir: Path, env: Mapping[str, str], seed: int = 1) -> None:
        self.url = url
        self.settings = StorageSettings(redis_url=url)
        self.fleet = Fleet(url, log_dir, env)
        self.gateway = SimGateway(self.settings, "gw-test", resend_s=2.0)
        self.front = Storage.open(self.settings)
        self.client = self.front.client
        self.store = self.front.rows
        self.oracle = DataOracle()
        self.rng = random.Random(seed)
        self.writes = 0

    # -- shards

    def start(self, *ids: str) -> None:
        for shard_id in ids:
            self.fleet.start(shard_id)

    async def holders(self) -> dict[int, Lease | None]:
        return await self.front.leases.holders(range(PARTITIONS))

    async def wait_balanced(self, ids: Iterable[str], timeout: float = 30.0) -> None:
        """Until every lease is held by its HRW owner among `ids` and each shard is
        ready and serves exactly its share."""
        try:
            await self.fleet.wait_balanced(self.front.leases, ids, timeout)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{self.fleet.log_tails()}") from None

    # -- writes

    async def put(self, tenant: str, entity: str, row_id: str, values: dict[str, Any],
                  ttl_ms: int | None = None) -> int:
        result = await self.store.put(tenant, entity, row_id, values, ttl_ms=ttl_ms)
        self.oracle.record(tenant, entity, row_id, result.version, values)
        self.writes += 1
        return result.version

    async def delete(self, tenant: str, entity: str, row_id: str) -> None:
        try:
            result = await self.store.delete(tenant, entity, row_id)
        except NotFound:  # a concurrent delete of the same row won
            return
        self.oracle.record(tenant, entity, row_id, result.version, None)
        self.writes += 1

    async def random_write(self, collections: list[tuple[str, str]], ids_per: int = 40) -> None:
        tenant, entity = self.rng.choice(collections)
        row_id = f"r{self.rng.randrange(ids_per)}"
        present = row_id in self.oracle.rows(tenant, entity)
        if present and self.rng.random() < 0.15:
            await self.delete(tenant, entity, row_id)
        else:
            await self.put(tenant, entity, row_id, random_row(self.rng))

    async def random_writes(self, collections: list[tuple[str, str]], count: int,
                            concurrency: int = 8, ids_per: int = 40,
                            pause: float = 0.0) -> None:
        """`count` random puts/deletes, `concurrency` at a time (an oracle of versions
        keeps concurrent writes to one row right)."""
        for start in range(0, count, concurrency):
            n = min(concurrency, count - start)
            await asyncio.gather(*(self.random_write(collections, ids_per) for _ in range(n)))
            if pause:
                await asyncio.sleep(pause)

    # -- subscriptions

    async def subscribe_many(self, collections: list[tuple[str, str]], count: int
                             ) -> list[SimSub]:
        subs: list[SimSub] = []
        for i in range(count):
            tenant, entity = collections[i % len(collections)]
            (query,) = make_queries(self.rng, entity, 1)
            subs.append(await self.gateway.subscribe(tenant, query))
        return subs

    async def reanchor(self, sub: SimSub, limit: int, after: int | None) -> None:
        """Slide `sub`'s window: `limit`, and start after its current item `after`
        (an index into its list; None: from the top)."""
        query = {k: v for k, v in sub.query.items() if k != "after"}
        query["limit"] = limit
        self.oracle.anchors.pop(sub.rid, None)
        if after is not None:
            item = sub.items[after]
            query["after"] = item.cursor
            self.oracle.anchors[sub.rid] = (item.id, dict(item.row))
        await self.gateway.reanchor(sub.rid, query)

    def subs_in(self, partitions: set[int]) -> list[SimSub]:
        return [s for s in self.gateway.subs.values() if s.active and s.p in partitions]

    # -- checks

    def diffs(self, subs: Iterable[SimSub] | None = None) -> list[str]:
        chosen = list(self.gateway.subs.values()) if subs is None else list(subs)
        return [d for s in chosen if s.active and (d := self.oracle.diff(s)) is not None]

    async def converge(self, timeout: float = 20.0, subs: Iterable[SimSub] | None = None,
                       settle: float = 0.3) -> float:
        """Until every (given) subscription equals the oracle, twice `settle` apart;
        the seconds it took. Fails with the differences and the shard logs."""
        chosen = list(self.gateway.subs.values()) if subs is None else list(subs)
        started = time.monotonic()
        deadline = started + timeout
        diffs: list[str] = []
        while time.monotonic() < deadline:
            diffs = self.diffs(chosen)
            if not diffs:
                reached = time.monotonic() - started
                await asyncio.sleep(settle)
                diffs = self.diffs(chosen)
                if not diffs:
                    return reached
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{len(diffs)} subscriptions did not converge in {timeout}s:\n"
            + "\n".join(diffs[:10]) + f"\nanomalies: {self.gateway.anomalies[-10:]}\n"
            + self.fleet.log_tails())

    def assert_clean(self) -> None:
        """No protocol violation was seen by any subscription."""
        errors = self.gateway.errors()
        assert not errors, "protocol violations:\n" + "\n".join(errors[:20])

    def resets(self) -> dict[str, int]:
        return {rid: s.resets for rid, s in self.gateway.subs.items()}

    def assert_fenced(self, stale: Mapping[int, int]) -> None:
        """No frame of partition p with an epoch below `stale[p]` follows, in stream
        order, the first frame of p under epoch `stale[p]` or newer (the new owner's)."""
        newest: dict[int, int] = {}
        for rec in self.gateway.journal:
            if rec.p not in stale:
                continue
            if rec.epoch >= stale[rec.p]:
                newest[rec.p] = max(newest.get(rec.p, 0), rec.epoch)
            elif rec.p in newest:
                raise AssertionError(
                    f"partition {rec.p}: frame n={rec.n} of {rec.shard} under old epoch "
                    f"{rec.epoch} published after epoch {newest[rec.p]} took over")

    async def reconnect(self) -> None:
        """Drop this process's pooled connections (after a Redis restart)."""
        pool: Any = getattr(self.client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()

    async def close(self) -> None:
        self.fleet.close()
        await self.gateway.close()
        await self.front.aclose()


def collections_of(tenants: int, entities: list[str]) -> list[tuple[str, str]]:
    return [(f"t{i}", e) for i in range(tenants) for e in entities]


def partitions_of(collections: Iterable[tuple[str, str]]) -> set[int]:
    return {partition_of(t, e) for t, e in collections}


async def wait_for(check: Callable[[], bool], timeout: float, what: str,
                   step: float = 0.02) -> float:
    """Until `check()`; the seconds it took. AssertionError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def shard_cluster(url: str, log_dir: Path, shards: Iterable[str] = ("s0", "s1", "s2"),
                        env: Mapping[str, str] | None = None, seed: int = 1,
                        ready: bool = True) -> AsyncIterator[ShardCluster]:
    """A running cluster: its gateway stream exists first, then the shards start; on
    exit every process started is killed (logs printed, shown by pytest on failure)."""
    c = ShardCluster(url, log_dir, {**FAST, **(env or {})}, seed)
    try:
        await c.gateway.start()
        ids = list(shards)
        c.start(*ids)
        if ready and ids:
            await c.wait_balanced(ids)
        yield c
    finally:
        print(c.fleet.log_tails(15))
        await c.close()
