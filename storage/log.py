"""A partition's change log: positions, reads with trim detection, collection loads.

Positions are always ids of real entries (`mark` adds a no-op entry to an empty log),
so a position that has been trimmed away is told by its entry being gone. Because
`XADD MAXLEN ~ N` never keeps fewer than N entries, a read that returns fewer entries
than it asked for (with COUNT < N) cannot have skipped any: the entry check is only
needed when a read comes back full, or when COUNT >= N (where a short read proves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cluster.keys import Keys
from cluster.messages import Change
from cluster.partition import partition_of
from cluster.settings import StorageSettings

from . import _lua
from ._format import StoredRow, parse_entry, parse_stored, ttl_member
from ._scan import hscan_batches
from .connection import RedisClient

__all__ = ["ChangeLog", "Loaded", "LogRead", "LogTrimmed"]

_MARK = _lua.load("mark")
_QUERY_MARK = _lua.load("query_mark")


class LogTrimmed(Exception):
    """The position was trimmed away: the reader must reload and reset."""


@dataclass(frozen=True, slots=True)
class LogRead:
    changes: list[Change]
    position: str


@dataclass(slots=True)
class Loaded:
    """A collection as loaded: rows, then changes since the scan began, and the position
    to tail from. Applying `changes` to `rows` with the version rule gives the rows as of
    `position`."""

    rows: list[StoredRow]
    changes: list[Change] = field(default_factory=list)
    position: str = "0-0"


class ChangeLog:
    """Reads of `lq:events:{p}`."""

    def __init__(self, client: RedisClient, settings: StorageSettings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.prefix)

    async def mark(self, p: int) -> tuple[str, int]:
        """The log's current end as a position, and Redis time in ms."""
        position, now, _ = await _MARK(
            self.client, [self.keys.events(p)], [self.settings.log_maxlen])
        return position.decode(), int(now)

    async def query_mark(
        self, tenant: str, entity: str, most: int
    ) -> tuple[str, int, dict[str, int] | None]:
        """For a one-shot query answered from memory, as one atomic read: the log's end
        (a position), Redis time in ms, and (row id -> version) of the collection's rows
        that have expired by then but are still stored; None for those when more than
        `most` rows of the partition are due (the caller then answers otherwise)."""
        p = partition_of(tenant, entity)
        keys = [self.keys.events(p), self.keys.ttl(p), self.keys.rows(p, tenant, entity)]
        prefix = ttl_member(tenant, entity, "")
        reply = await _QUERY_MARK(self.client, keys, [self.settings.log_maxlen, prefix, most])
        position, now, over = reply[0].decode(), int(reply[1]), int(reply[2])
        if over:
            return position, now, None
        rest = reply[3:]
        due = {rest[i].decode(): int(rest[i + 1]) for i in range(0, len(rest), 2)}
        return position, now, due

    async def end(self, p: int) -> tuple[str, int]:
        """The log's current end as a position, and the version its entry logged (0 for
        a marker): the two parts of a `cluster.logpos` pos."""
        position, _, version = await _MARK(
            self.client, [self.keys.events(p)], [self.settings.log_maxlen])
        return position.decode(), int(version)

    async def changed_since(
        self, p: int, stream_id: str, version: int, tenant: str, entity: str, most: int
    ) -> list[tuple[str, int]] | None:
        """(row id, version) of every change of (tenant, entity) logged after the entry
        `stream_id`, in log order, up to the log's end; None when that entry is gone or
        logged another write than `version` (a lost entry whose id was given again), or
        when more than `most` entries (of any collection) follow it. Values are not read
        beyond the fields named, so the cost is the entries' count."""
        key = self.keys.events(p)
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.xrange(key, stream_id, stream_id, count=1)
        pipe.xrange(key, f"({stream_id}", "+", count=most + 1)
        at, after = await pipe.execute()
        if not at or int(at[0][1].get(b"v", b"0")) != version or len(after) > most:
            return None
        t, e = tenant.encode(), entity.encode()
        return [(f[b"i"].decode(), int(f[b"v"])) for _, f in after
                if f.get(b"t") == t and f.get(b"e") == e and b"i" in f]

    async def entry_exists(self, p: int, position: str) -> bool:
        found = await self.client.xrange(self.keys.events(p), position, position, count=1)
        return bool(found)

    async def read(self, p: int, after: str, count: int = 1000) -> LogRead:
        """Changes after `after` (at most `count`); LogTrimmed if some may be lost."""
        key = self.keys.events(p)
        entries: Any = await self.client.xrange(key, f"({after}", "+", count=count)
        full = len(entries) >= count or count >= self.settings.log_maxlen
        if full and not await self.entry_exists(p, after):
            raise LogTrimmed(f"partition {p}: position {after} was trimmed")
        changes = [c for sid, fields in entries if (c := parse_entry(sid, fields)) is not None]
        position = entries[-1][0].decode() if entries else after
        return LogRead(changes, position)

    async def read_to_end(self, p: int, after: str, count: int = 1000) -> LogRead:
        """Every change after `after` up to the log's end at the time of the call."""
        changes: list[Change] = []
        position = after
        while True:
            got = await self.read(p, position, count)
            changes.extend(got.changes)
            if got.position == position or len(got.changes) < count - 1:
                return LogRead(changes, got.position)
            position = got.position

    async def load_collection(
        self, tenant: str, entity: str, scan_count: int = 1000, since: str | None = None
    ) -> Loaded:
        """Note the log's end, HSCAN the rows, then read the log from the noted id.

        With `since` (a reader's position in this partition's log, at or before the
        scan's start) the replay starts there instead: a reader that will go on
        re-delivering changes after `since` then finds every delete among them already
        remembered, so no stale put can bring a deleted row back. Rows expired at the
        scan's start are left out. Without `since`, retries once when the log was
        trimmed past the noted id during a very long scan; a trimmed `since` raises
        LogTrimmed.
        """
        p = partition_of(tenant, entity)
        key = self.keys.rows(p, tenant, entity)
        for attempt in range(2):
            position, now = await self.mark(p)
            if since is not None:
                position = since
            rows: dict[str, StoredRow] = {}
            async for items in hscan_batches(self.client, key, scan_count):
                for raw_id, raw in items.items():
                    row = parse_stored(raw_id.decode(), raw)
                    if row.expires_at == 0 or row.expires_at > now:
                        rows[row.id] = row
            try:
                tail = await self.read_to_end(p, position)
            except LogTrimmed:
                if attempt == 1 or since is not None:
                    raise
                continue
            mine = [c for c in tail.changes if c.tenant == tenant and c.entity == entity]
            return Loaded(list(rows.values()), mine, tail.position)
        raise AssertionError("unreachable")
