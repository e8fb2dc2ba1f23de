"""The cluster-wide cursor key: made once in Redis with SET NX, shared by all processes.

Shards make cursors and gateways check them, so every process must hold the same key.
An operator may instead set one (`LQ_CURSOR_SECRET`); then Redis is not consulted.
"""

from __future__ import annotations

import secrets

from cluster.keys import Keys

from .connection import RedisClient

__all__ = ["cursor_secret"]


async def cursor_secret(client: RedisClient, prefix: str, configured: str = "") -> bytes:
    """The configured secret, else the key in Redis (created by the first caller)."""
    if configured:
        return configured.encode()
    key = Keys(prefix).cursor_key()
    await client.set(key, secrets.token_hex(32), nx=True)
    value = await client.get(key)
    if value is None:  # deleted between the two calls: try once more
        await client.set(key, secrets.token_hex(32), nx=True)
        value = await client.get(key)
    assert isinstance(value, bytes)
    return value
