"""Batched HSCAN of one hash, typed for a bytes-speaking client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from .connection import RedisClient

__all__ = ["hscan_batches"]


async def hscan_batches(
    client: RedisClient, key: str, count: int
) -> AsyncIterator[dict[bytes, bytes]]:
    """Yield the hash in HSCAN batches; an element may come twice, none is missed."""
    cursor: int = 0
    while True:
        reply: Any = await client.hscan(key, cursor, count=count)
        cursor = int(reply[0])
        yield cast(dict[bytes, bytes], reply[1])
        if cursor == 0:
            return
