"""Tailing the change logs of many partitions with a fixed number of connections.

Standalone Redis: ONE blocking `XREAD COUNT n BLOCK ms STREAMS k1..kn id1..idn` over all
given partitions, so a write wakes the reader at once. Redis Cluster refuses a
multi-key XREAD across slots (every `{p}` is its own slot), so there each read is one
pipeline of non-blocking per-partition `XRANGE key (pos + COUNT n`, which redis-py
groups per node and sends to the nodes concurrently (XRANGE rather than XREAD: see
`storage._streams`); when a pass finds nothing, the tail sleeps 1 ms, doubling up to
50 ms, and goes back to 1 ms on activity: no busy loop. Either way one read holds at
most one connection per node, however many partitions it covers.

Invariants: a returned position is the id of the last entry read (wanted or not), so
positions stay real entry ids (see `storage.log`) and skipped entries are never read
again; a partition whose read came back full and whose position entry is gone is
reported as trimmed, with no changes, and the caller must reload and reset it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.keys import Keys
from cluster.messages import Change
from cluster.partition import PARTITIONS
from cluster.settings import StorageSettings

from ._format import parse_entry
from ._streams import Entry
from .connection import RedisClient, is_cluster

__all__ = ["PartitionTail", "TailRead", "Wanted"]

Wanted = Callable[[str, str], bool]
"""(tenant, entity) -> whether anyone subscribes to that collection."""


@dataclass(frozen=True, slots=True)
class TailRead:
    """Wanted changes per partition (in log order), the new position of every partition
    that advanced (and the version its entry logged, 0 for a marker: with the position,
    a `cluster.logpos` pos), and the partitions whose position was trimmed away."""

    changes: dict[int, list[Change]] = field(default_factory=dict)
    positions: dict[int, str] = field(default_factory=dict)
    trimmed: frozenset[int] = frozenset()
    versions: dict[int, int] = field(default_factory=dict)


def decode(entries: list[Entry], wanted: Wanted | None) -> list[Change]:
    """The changes in `entries`, skipping markers and, before decoding any values,
    entries whose collection `wanted` refuses."""
    out: list[Change] = []
    verdicts: dict[tuple[bytes, bytes], bool] = {}
    for sid, fields in entries:
        if wanted is not None:
            t, e = fields.get(b"t"), fields.get(b"e")
            if t is None or e is None:
                continue
            ok = verdicts.get((t, e))
            if ok is None:
                ok = verdicts[(t, e)] = wanted(t.decode(), e.decode())
            if not ok:
                continue
        change = parse_entry(sid, fields)
        if change is not None:
            out.append(change)
    return out


class PartitionTail:
    """Reads the logs of the partitions it is given, from the positions it is given.

    On standalone Redis the read blocks a connection for up to `block_ms`: give it a
    client kept for blocking reads. `round_trips` counts reads sent (for tests and metrics).
    """

    def __init__(
        self,
        client: RedisClient,
        settings: StorageSettings,
        *,
        idle_min_s: float = 0.001,
        idle_max_s: float = 0.05,
    ) -> None:
        self.client = client
        self.log_maxlen = settings.log_maxlen
        self.cluster = is_cluster(client)
        keys = Keys(settings.prefix)
        self._keys = [keys.events(p) for p in range(PARTITIONS)]
        self._partition_of = {k.encode(): p for p, k in enumerate(self._keys)}
        self.idle_min_s = idle_min_s
        self.idle_max_s = idle_max_s
        self._idle_s = idle_min_s
        self.round_trips = 0

    async def read(
        self,
        positions: Mapping[int, str],
        *,
        count: int = 500,
        block_ms: int = 1000,
        wanted: Wanted | None = None,
    ) -> TailRead:
        """At most `count` entries per partition after its position, waiting up to
        `block_ms` (0: no wait) for the first one. No partitions: sleeps `block_ms`."""
        if not positions:
            await asyncio.sleep(block_ms / 1000)
            return TailRead()
        if self.cluster:
            raw = await self._poll(positions, count, block_ms)
        else:
            raw = await self._block(positions, count, block_ms)
        full = [
            p for p, entries in raw.items() if len(entries) >= count or count >= self.log_maxlen
        ]
        trimmed = await self._trimmed(full, positions)
        changes: dict[int, list[Change]] = {}
        moved: dict[int, str] = {}
        versions: dict[int, int] = {}
        for p, entries in raw.items():
            if p in trimmed or not entries:
                continue
            moved[p] = entries[-1][0].decode()
            versions[p] = int(entries[-1][1].get(b"v", b"0"))
            found = decode(entries, wanted)
            if found:
                changes[p] = found
        return TailRead(changes, moved, frozenset(trimmed), versions)

    async def _block(
        self, positions: Mapping[int, str], count: int, block_ms: int
    ) -> dict[int, list[Entry]]:
        streams = {self._keys[p]: pos for p, pos in positions.items()}
        self.round_trips += 1
        reply: Any = await self.client.xread(
            streams,  # type: ignore[arg-type]
            count=count,
            block=block_ms if block_ms > 0 else None,
        )
        pairs = reply.items() if isinstance(reply, dict) else (reply or [])
        out: dict[int, list[Entry]] = {}
        for key, entries in pairs:
            if isinstance(reply, dict):  # RESP3: key -> [entries]
                entries = entries[0] if entries else []
            out[self._partition_of[key]] = list(entries)
        return out

    async def _poll(
        self, positions: Mapping[int, str], count: int, block_ms: int
    ) -> dict[int, list[Entry]]:
        client: Any = self.client
        await client.initialize()  # a fresh client knows no slots yet
        order = list(positions)
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            pipe: Any = client.pipeline(transaction=False)
            for p in order:
                key = self._keys[p]
                # Naming the node skips redis-py's per-command slot lookup (a third of a
                # pass's CPU); a MOVED reply is still retried, routed by slot.
                node = client.get_node_from_key(key)
                pipe.execute_command(
                    "XRANGE", key, f"({positions[p]}", "+", "COUNT", count, target_nodes=node
                )
            self.round_trips += 1
            replies: list[Any] = await pipe.execute()
            if any(replies):
                self._idle_s = self.idle_min_s
                return {p: list(r) for p, r in zip(order, replies, strict=True) if r}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {}
            await asyncio.sleep(min(self._idle_s, remaining))
            self._idle_s = min(self._idle_s * 2, self.idle_max_s)

    async def _trimmed(self, ps: list[int], positions: Mapping[int, str]) -> set[int]:
        """Of partitions whose read came back full, those whose position entry is gone."""
        if not ps:
            return set()
        pipe: Any = self.client.pipeline(transaction=False)
        for p in ps:
            pipe.xrange(self._keys[p], positions[p], positions[p], count=1)
        replies: list[Any] = await pipe.execute()
        return {p for p, r in zip(ps, replies, strict=True) if not r}
