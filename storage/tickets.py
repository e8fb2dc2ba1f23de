"""Single-use tickets (docs/protocol.md section 8a): a token's rights carried into a URL.

Invariants:
- a ticket is 32 random bytes (URL-safe base64); Redis holds only its SHA-256, so the
  keyspace (or a dump of it) never holds a usable ticket;
- the grant stored with it is opaque bytes to this module (the gateway encodes who may
  do what until when); it expires with the key, at most `ttl_ms` after issue;
- `redeem` takes the grant and deletes the key in one command (GETDEL, Redis 6.2), so
  two gateways presenting the same ticket at once cannot both succeed;
- a malformed ticket never reaches Redis.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from cluster.keys import Keys

from .connection import RedisClient

__all__ = ["Tickets"]

_BYTES = 32
_LENGTH = 43  # URL-safe base64 of 32 bytes, unpadded
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Tickets:
    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    def _key(self, ticket: str) -> str:
        return self.keys.ticket(hashlib.sha256(ticket.encode()).hexdigest())

    async def issue(self, grant: bytes, ttl_ms: int) -> str:
        """A new ticket for `grant`, valid `ttl_ms` milliseconds (at least 1)."""
        ticket = secrets.token_urlsafe(_BYTES)
        await self.client.set(self._key(ticket), grant, px=max(1, ttl_ms))
        return ticket

    async def redeem(self, ticket: str) -> bytes | None:
        """The grant of a valid ticket, consumed; None when unknown, expired, used or
        malformed."""
        if len(ticket) != _LENGTH or not set(ticket) <= _ALPHABET:
            return None
        grant: Any = await self.client.getdel(self._key(ticket))
        return bytes(grant) if grant is not None else None
