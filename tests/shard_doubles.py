"""In-memory doubles of the shard runtime's ports (`shard.runtime.ports`), for engine
tests that run *in addition to* the real-Redis process tests.

- `MemoryStore` is a `RowSource` and a `ChangeFeed`: rows per collection and one change
  log per partition, with the semantics of `storage` that the engine relies on: a
  position is always a real entry id (`mark` adds a marker to an empty log), a load
  replays the log from `since`, versions only grow, a trimmed position is reported as
  trimmed, changes of unwanted collections are skipped;
- `MemoryRegistry` is a `Registrations` (plus the gateway's writes);
- `MemoryFrames` is a `FrameSink` that keeps every frame published, and can play a
  gateway whose stream is gone.
A test composes them with the real `Engine`, `Publisher` and `TailLoop`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from cluster.messages import Change, Registration
from cluster.partition import partition_of
from storage import DeltaFrame, Loaded, StoredRow, TailRead, Wanted

__all__ = ["MemoryFrames", "MemoryRegistry", "MemoryStore"]

Entry = tuple[str, Change | None]  # (stream id, change); None is a marker


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, StoredRow]] = {}
        self.logs: dict[int, list[Entry]] = {}
        self.trimmed_before: dict[int, int] = {}  # p -> sequence of its oldest kept entry
        self._seq = itertools.count(1)
        self._version = itertools.count(1)

    # -- writes (what the write scripts do)

    def _append(self, p: int, change: Change | None) -> str:
        stream_id = f"{1_000_000 + next(self._seq)}-0"
        if change is not None:
            change = Change(change.tenant, change.entity, change.id, change.version,
                            change.values, stream_id)
        self.logs.setdefault(p, []).append((stream_id, change))
        return stream_id

    def write(self, tenant: str, entity: str, row_id: str,
              values: dict[str, Any] | None) -> Change:
        """Put (or, with None, delete) a row: a new version, logged in its partition."""
        version = next(self._version)
        rows = self.rows.setdefault((tenant, entity), {})
        if values is None:
            rows.pop(row_id, None)
        else:
            rows[row_id] = StoredRow(row_id, version, dict(values))
        p = partition_of(tenant, entity)
        stream_id = self._append(p, Change(tenant, entity, row_id, version, values))
        return Change(tenant, entity, row_id, version, values, stream_id)

    def trim(self, p: int) -> None:
        """Drop every entry of `p`'s log but the newest (as `MAXLEN` would)."""
        log = self.logs.get(p, [])
        del log[:-1]
        if log:
            self.trimmed_before[p] = _seq_of(log[0][0])

    def current(self, tenant: str, entity: str) -> list[tuple[str, dict[str, Any]]]:
        """(id, values) of every stored row, for the oracle."""
        return [(r.id, r.values) for r in self.rows.get((tenant, entity), {}).values()]

    # -- RowSource

    async def mark(self, p: int) -> tuple[str, int]:
        log = self.logs.get(p)
        position = log[-1][0] if log else self._append(p, None)
        return position, 1_700_000_000_000

    async def end(self, p: int) -> tuple[str, int]:
        position, _ = await self.mark(p)
        change = self.logs[p][-1][1]
        return position, 0 if change is None else change.version

    async def changed_since(
        self, p: int, stream_id: str, version: int, tenant: str, entity: str, most: int
    ) -> list[tuple[str, int]] | None:
        at = [c for sid, c in self.logs.get(p, []) if sid == stream_id]
        if not at or (0 if at[0] is None else at[0].version) != version:
            return None
        after = self._after(p, stream_id, None)
        if len(after) > most:
            return None
        return [(c.id, c.version) for _, c in after
                if c is not None and (c.tenant, c.entity) == (tenant, entity)]

    async def load_collection(self, tenant: str, entity: str, *,
                              since: str | None = None) -> Loaded:
        p = partition_of(tenant, entity)
        position = since if since is not None else (await self.mark(p))[0]
        rows = list(self.rows.get((tenant, entity), {}).values())
        after = self._after(p, position, None)
        changes = [c for _, c in after
                   if c is not None and (c.tenant, c.entity) == (tenant, entity)]
        return Loaded(rows, changes, after[-1][0] if after else position)

    # -- ChangeFeed

    async def read(
        self,
        positions: Mapping[int, str],
        *,
        count: int = 500,
        block_ms: int = 1000,
        wanted: Wanted | None = None,
    ) -> TailRead:
        await asyncio.sleep(0)
        changes: dict[int, list[Change]] = {}
        moved: dict[int, str] = {}
        versions: dict[int, int] = {}
        trimmed: set[int] = set()
        for p, position in positions.items():
            if _seq_of(position) < self.trimmed_before.get(p, 0):
                trimmed.add(p)
                continue
            entries = self._after(p, position, count)
            if not entries:
                continue
            moved[p] = entries[-1][0]
            last = entries[-1][1]
            versions[p] = 0 if last is None else last.version
            found = [c for _, c in entries
                     if c is not None and (wanted is None or wanted(c.tenant, c.entity))]
            if found:
                changes[p] = found
        return TailRead(changes, moved, frozenset(trimmed), versions)

    def _after(self, p: int, position: str, count: int | None) -> list[Entry]:
        after = [e for e in self.logs.get(p, []) if _seq_of(e[0]) > _seq_of(position)]
        return after if count is None else after[:count]


def _seq_of(stream_id: str) -> int:
    return int(stream_id.split("-")[0])


class MemoryRegistry:
    def __init__(self) -> None:
        self.regs: dict[int, dict[str, Registration]] = {}

    def put(self, reg: Registration) -> int:
        """Create or replace a registration (as the gateway does); its partition."""
        p = partition_of(reg.tenant, str(reg.query["entity"]))
        self.regs.setdefault(p, {})[reg.rid] = reg
        return p

    def delete(self, p: int, rid: str) -> None:
        self.regs.get(p, {}).pop(rid, None)

    async def by_partition(self, p: int) -> dict[str, Registration]:
        return dict(self.regs.get(p, {}))

    async def get(self, p: int, rid: str) -> Registration | None:
        return self.regs.get(p, {}).get(rid)


class MemoryFrames:
    def __init__(self) -> None:
        self.published: list[tuple[str, DeltaFrame]] = []
        self.gone: set[str] = set()  # gateways whose stream no longer exists

    async def publish(self, frames: Sequence[tuple[str, DeltaFrame]]) -> list[bool]:
        await asyncio.sleep(0)
        added = [gateway not in self.gone for gateway, _ in frames]
        self.published.extend(f for f, ok in zip(frames, added, strict=True) if ok)
        return added
