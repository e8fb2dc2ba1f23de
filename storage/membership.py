"""Membership of shards and gateways, decided by Redis's clock (DESIGN.md section 2).

A member is live while its score in the index (`lq:{m}:members` for shards,
`lq:{m}:gateways` for gateways), its expiry on Redis's clock, is in the future; the
heartbeat script sets it together with the liveness key (`lq:{m}:shard:<id>`, value:
the process's counters) using Redis `TIME`, so no process clock decides liveness and no
one scans the keyspace. A shard's (re)join or leave appends a notice to the small stream
`lq:{m}:changes`, so everyone recomputes ownership at once. All these keys share the
`{m}` slot, so every script here is one-slot on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cluster.keys import Keys

from . import _lua, _streams
from .connection import RedisClient

__all__ = ["MemberKind", "Membership", "Notice"]

MemberKind = Literal["shard", "gateway"]

_HEARTBEAT = _lua.load("heartbeat")
_LEAVE = _lua.load("leave")
_MEMBERS = _lua.load("members")


@dataclass(frozen=True, slots=True)
class Notice:
    """One join or leave notice: `op` is `join` or `leave`."""

    entry_id: str
    op: str
    kind: str
    id: str


class Membership:
    """Heartbeats, the live set and notices, for one key prefix.

    Notices are appended for shards only: gateways' comings and goings change no
    partition's owner. Index entries expired longer than `prune_after_ms` are removed
    by the next heartbeat, so a crashed member's entry does not stay forever.
    """

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        *,
        prune_after_ms: int = 3_600_000,
        notices_maxlen: int = 1000,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.prune_after_ms = prune_after_ms
        self.notices_maxlen = notices_maxlen

    def _liveness(self, kind: MemberKind, member_id: str) -> str:
        return self.keys.shard(member_id) if kind == "shard" else self.keys.gateway(member_id)

    def _index(self, kind: MemberKind) -> str:
        return self.keys.members() if kind == "shard" else self.keys.gateways()

    async def heartbeat(
        self, kind: MemberKind, member_id: str, ttl_ms: int, value: bytes
    ) -> tuple[int, bool]:
        """Refresh liveness for `ttl_ms`; returns (Redis time in ms, whether it (re)joined)."""
        keys = [self._liveness(kind, member_id), self._index(kind), self.keys.changes()]
        notify = "1" if kind == "shard" else "0"
        args = [member_id, ttl_ms, value, kind, notify, self.prune_after_ms, self.notices_maxlen]
        now, joined = await _HEARTBEAT(self.client, keys, args)
        return int(now), bool(joined)

    async def leave(self, kind: MemberKind, member_id: str) -> bool:
        """Leave now (with a notice for a shard); True if the member was in the index.

        Calling it again still appends a notice: a stopping shard does so after
        releasing its leases, so the new owners take over at once.
        """
        keys = [self._liveness(kind, member_id), self._index(kind), self.keys.changes()]
        notify = "1" if kind == "shard" else "0"
        return bool(await _LEAVE(self.client, keys, [member_id, kind, notify, self.notices_maxlen]))

    async def live(self, kind: MemberKind) -> tuple[list[str], int]:
        """The live members' ids (sorted) and Redis time in ms, read in one script."""
        now, ids = await _MEMBERS(self.client, [self._index(kind)], [""])
        return sorted(i.decode() for i in ids), int(now)

    async def expiries(self, kind: MemberKind) -> dict[str, int]:
        """Every member in the index (live or not yet pruned) -> its expiry in ms on
        Redis's clock: live are those whose expiry is after Redis's now. Lets a shard
        look again right when another one's membership runs out."""
        raw: Any = await self.client.zrange(self._index(kind), 0, -1, withscores=True)
        return {member.decode(): int(score) for member, score in raw}

    async def gone(self, kind: MemberKind, grace_ms: int) -> tuple[list[str], int]:
        """Members expired more than `grace_ms` ago and not yet pruned (for registry
        clean-up of gone gateways), and Redis time in ms. `leave` forgets one."""
        now, ids = await _MEMBERS(self.client, [self._index(kind)], [grace_ms])
        return sorted(i.decode() for i in ids), int(now)

    async def values(self, kind: MemberKind, ids: Sequence[str]) -> dict[str, bytes]:
        """The liveness values (counters) of those `ids` that are still live."""
        if not ids:
            return {}
        raw: list[Any] = await self.client.mget([self._liveness(kind, i) for i in ids])
        return {i: v for i, v in zip(ids, raw, strict=True) if v is not None}

    async def notices_tail_id(self) -> str:
        """The id to read notices after so that only later ones arrive (like `$`, but a
        real position that later reads can continue from)."""
        last: Any = await self.client.xrevrange(self.keys.changes(), "+", "-", count=1)
        return last[0][0].decode() if last else "0-0"

    async def notices(
        self, after_id: str, block_ms: int, count: int = 100
    ) -> tuple[list[Notice], str]:
        """Notices after `after_id`, waiting up to `block_ms`; and the id to continue from.

        It blocks a connection: call it on a client kept for blocking reads.
        """
        key = self.keys.changes()
        entries = await _streams.xread(self.client, key, after_id, count, block_ms)
        found: list[Notice] = []
        for sid, fields in entries:
            found.append(
                Notice(
                    entry_id=sid.decode(),
                    op=fields.get(b"op", b"").decode(),
                    kind=fields.get(b"kind", b"").decode(),
                    id=fields.get(b"id", b"").decode(),
                )
            )
        return found, (found[-1].entry_id if found else after_id)
