"""The delivery canary: this gateway writes a row and waits for its own delta.

Each gateway holds one internal subscription (no client connection) in changes mode on
the entity `canary` of the reserved tenant `CANARY_TENANT` (refused in every token, so
no tenant can read or write it), filtered on its own gateway id, and writes its row
every `canary_interval` seconds with a counter in it. The delta goes the whole way: the
change log, the owning shard's tail and matcher, this gateway's delta stream, the demux,
the fence and the mirror, into a tiny outbox that this loop drains itself.

Invariants:
- `age()` is the time since the last canary delta, counted from no earlier than the
  moment shards were last seen live (with no live shard nothing can be delivered, and
  the gateway stays ready, DESIGN.md section 6); `unready()` names the fault when that
  age passes `canary_timeout` while shards are live;
- the outbox is bounded (`_OUTBOX_MESSAGES`, `_OUTBOX_BYTES`); on overflow the
  subscription catches up with a snapshot, whose `match` counts as delivery too;
- the write times wait in a dict bounded by `_PENDING` (oldest dropped first), and a
  delay is observed once per counter value;
- one writer of all of it: the loop turn `once`, under `cluster.loops.guarded`; the
  subscription is the hub's like any other, so drain removes its registration, and
  the loop opens nothing while draining.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from ..auth import CANARY_TENANT
from .outbox import Outbox
from .subscription import Subscription

__all__ = ["CANARY_ENTITY", "CANARY_TENANT", "Canary"]

CANARY_ENTITY = "canary"
_OUTBOX_MESSAGES = 16
_OUTBOX_BYTES = 64 * 1024
_PENDING = 64

Opener = Callable[[dict[str, Any], Outbox], Awaitable[Subscription]]
"""(the query, its outbox) -> an announced subscription of the reserved tenant."""
Writer = Callable[[str, dict[str, Any], int], Awaitable[None]]
"""(row id, values, ttl in ms) -> None: a put of the reserved tenant's canary row."""


class Canary:
    def __init__(self, gateway_id: str, interval_s: float, timeout_s: float,
                 open_sub: Opener, write: Writer, live_shards: Callable[[], int],
                 draining: Callable[[], bool],
                 observe: Callable[[float], None] | None = None) -> None:
        self.gateway_id = gateway_id
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._open_sub = open_sub
        self._write = write
        self._live_shards = live_shards
        self._draining = draining
        self._observe = observe
        self.outbox = Outbox(_OUTBOX_MESSAGES, _OUTBOX_BYTES)
        self.sub: Subscription | None = None
        self._counter = 0
        self._pending: dict[int, float] = {}  # counter -> monotonic time of its write
        self._next_write = 0.0
        now = time.monotonic()
        self._seen = now  # the last canary delta (or the start)
        self._baseline = now  # shards were last seen not live (or the start)
        self.delivered = 0

    def held(self, table: Mapping[str, object]) -> bool:
        """Whether its subscription is in the hub's `table` (to count it out)."""
        return self.sub is not None and self.sub.rid in table

    # -- readiness

    def age(self) -> float:
        """Seconds without a canary delta, counted from when shards were live."""
        return time.monotonic() - max(self._seen, self._baseline)

    def unready(self, live_shards: int) -> str | None:
        """Why the gateway is not ready (None: it is)."""
        if live_shards == 0:
            return None
        age = self.age()
        if age <= self.timeout_s:
            return None
        return f"no canary delta for {age:.1f} s while {live_shards} shard(s) are live"

    # -- the loop

    async def once(self) -> None:
        """One turn: (re)open the subscription, write when due, take what arrived."""
        now = time.monotonic()
        if self._live_shards() == 0:
            self._baseline = now
        if self._draining():
            await asyncio.sleep(self.interval_s)
            return
        if self.sub is None or self.sub.closed:
            query = {"entity": CANARY_ENTITY, "mode": "changes",
                     "where": {"gw": self.gateway_id}}
            self.sub = await self._open_sub(query, self.outbox)
        if now >= self._next_write:
            self._next_write = now + self.interval_s
            self._counter += 1
            self._pending[self._counter] = now
            while len(self._pending) > _PENDING:
                del self._pending[next(iter(self._pending))]
            ttl_ms = int(max(60.0, 10 * self.interval_s) * 1000)  # outlives no gateway long
            await self._write(self.gateway_id, {"gw": self.gateway_id, "n": self._counter},
                              ttl_ms)
        try:
            left = max(0.0, self._next_write - time.monotonic())
            await asyncio.wait_for(self.outbox.wake.wait(), left)
        except TimeoutError:
            pass
        self.take()

    def take(self) -> None:
        """Drain the outbox; every message that carries our row counts as delivery."""
        for _, _, data in self.outbox.take(_OUTBOX_MESSAGES, _OUTBOX_BYTES):
            message = orjson.loads(data)
            row = message.get("row") if isinstance(message, dict) else None
            if not isinstance(row, dict) or row.get("gw") != self.gateway_id:
                continue
            now = time.monotonic()
            self._seen = now
            self.delivered += 1
            n = row.get("n")
            written = self._pending.pop(n, None) if isinstance(n, int) else None
            if written is not None and self._observe is not None:
                self._observe(now - written)
