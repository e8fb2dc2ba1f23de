"""The durable subscription registry: `lq:subs:{p}` plus `lq:gwsubs:<gateway>`.

Order of writes (DESIGN.md section 5b): put writes the gateway index entry first, then
the registration; delete removes the registration first, then the index entry. So the
index always covers every registration, and clean-up of a gone gateway never scans the
256 partition hashes.
"""

from __future__ import annotations

from typing import Any

from cluster.keys import Keys
from cluster.messages import Registration

from .connection import RedisClient

__all__ = ["Registry"]


def _member(p: int, rid: str) -> str:
    return f"{p}:{rid}"


class Registry:
    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def put(self, p: int, reg: Registration) -> None:
        """Create or replace a registration (a reanchor rewrites it)."""
        await self.client.sadd(self.keys.gwsubs(reg.gateway), _member(p, reg.rid))
        await self.client.hset(self.keys.subs(p), reg.rid, reg.encode())

    async def delete(self, p: int, rid: str, gateway: str) -> None:
        await self.client.hdel(self.keys.subs(p), rid)
        await self.client.srem(self.keys.gwsubs(gateway), _member(p, rid))

    async def get(self, p: int, rid: str) -> Registration | None:
        raw = await self.client.hget(self.keys.subs(p), rid)
        return None if raw is None else Registration.decode(rid, raw)

    async def by_partition(self, p: int) -> dict[str, Registration]:
        """Every registration of partition `p`, by registry id."""
        found: dict[str, Registration] = {}
        async for rid, raw in self.client.hscan_iter(self.keys.subs(p), count=500):
            text = rid.decode()
            found[text] = Registration.decode(text, raw)
        return found

    async def by_gateway(self, gateway: str) -> list[tuple[int, str]]:
        """(partition, registry id) of every registration `gateway` holds."""
        out: list[tuple[int, str]] = []
        async for member in self.client.sscan_iter(self.keys.gwsubs(gateway), count=500):
            p, _, rid = member.decode().partition(":")
            out.append((int(p), rid))
        return out

    async def drop_gateway(self, gateway: str) -> int:
        """Remove every registration of `gateway` (it is gone); returns how many."""
        entries = await self.by_gateway(gateway)
        if entries:
            # One pipeline of registration deletes; the index goes only after them.
            pipe: Any = self.client.pipeline(transaction=False)
            for p, rid in entries:
                pipe.hdel(self.keys.subs(p), rid)
            await pipe.execute()
        await self.client.delete(self.keys.gwsubs(gateway))
        return len(entries)
