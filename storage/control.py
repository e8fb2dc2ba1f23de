"""Control streams: gateway -> shard messages on `lq:ctrl:<shard>` (DESIGN.md 5, 5b).

Each stream is read through one consumer group (created at `0` with MKSTREAM, so
messages sent before the shard ever ran are delivered). A message stays pending until
acknowledged, and a restarted shard with the same id and consumer name re-reads its
pending entries first, so nothing sent to a shard id is lost. Senders never trim; only
the shard trims, never past its oldest pending entry nor past what was delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import ResponseError

from cluster.keys import Keys

from . import _lua, _streams
from .connection import RedisClient

__all__ = ["GROUP", "OPS", "Control", "ControlMessage"]

log = logging.getLogger(__name__)

GROUP = "shard"
OPS = frozenset({"subscribe", "unsubscribe", "reanchor", "resync", "query"})

_TRIM = _lua.load("ctrl_trim")


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """One control entry: `hops` counts forwards (a shard forwards at most once);
    `pos`, on a subscribe only, the log position a changes-mode client resumes from
    (`cluster.logpos`; shards older than it ignore the field). A `query` (a one-shot
    query asked of the owner, answered on the gateway's delta stream) carries its
    request id in `rid` and, in `body`, the JSON of its tenant and query; shards older
    than the op drop it as malformed, and the gateway's timeout answers by a scan."""

    entry_id: str
    op: str
    p: int
    rid: str
    gw: str
    hops: int
    pos: str | None = None
    body: bytes | None = None


def _parse(sid: bytes, fields: dict[bytes, bytes]) -> ControlMessage | None:
    try:
        op = fields[b"op"].decode()
        if op not in OPS:
            return None
        return ControlMessage(
            sid.decode(),
            op,
            int(fields[b"p"]),
            fields[b"rid"].decode(),
            fields[b"gw"].decode(),
            int(fields.get(b"hops", b"0")),
            fields[b"pos"].decode() if op == "subscribe" and b"pos" in fields else None,
            fields[b"q"] if op == "query" else None,
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


class Control:
    """Send, read, acknowledge and trim control messages under one key prefix."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    async def ensure_group(self, shard_id: str) -> bool:
        """Create the stream and its group at `0` unless they exist; True if created."""
        try:
            await self.client.xgroup_create(self.keys.ctrl(shard_id), GROUP, "0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
            return False
        return True

    async def send(self, shard_id: str, op: str, p: int, rid: str, gw: str, hops: int = 0,
                   pos: str | None = None) -> str:
        """Append a message (no MAXLEN: only the shard trims); returns its entry id."""
        if op not in OPS or op == "query":
            raise ValueError(f"unknown control op {op!r}")
        fields: dict[str, str | int] = {"op": op, "p": p, "rid": rid, "gw": gw, "hops": hops}
        if pos is not None and op == "subscribe":
            fields["pos"] = pos
        sid = await self.client.xadd(self.keys.ctrl(shard_id), fields)  # type: ignore[arg-type]
        return sid.decode() if isinstance(sid, bytes) else str(sid)

    async def send_query(self, shard_id: str, p: int, req: str, gw: str, body: bytes) -> None:
        """Ask `shard_id` a one-shot query (`req`: the gateway's request id, `body`: the
        JSON of tenant and query); never forwarded (`hops` 1): a shard that does not own
        `p` answers a miss at once."""
        fields = {"op": "query", "p": p, "rid": req, "gw": gw, "hops": 1, "q": body}
        await self.client.xadd(self.keys.ctrl(shard_id), fields)  # type: ignore[arg-type]

    async def read(
        self,
        shard_id: str,
        consumer: str,
        *,
        pending: bool,
        count: int = 100,
        block_ms: int = 0,
        after: str = "0",
    ) -> list[ControlMessage]:
        """Own pending entries after `after` (`pending=True`, never blocks) or new ones
        (waiting up to `block_ms`). Malformed entries are acknowledged and skipped.

        Re-creates a missing group (a Redis that lost its data) and reads again.
        """
        key = self.keys.ctrl(shard_id)
        position = after if pending else ">"
        try:
            entries = await _streams.xreadgroup(
                self.client, key, GROUP, consumer, position, count, block_ms
            )
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await self.ensure_group(shard_id)
            entries = await _streams.xreadgroup(
                self.client, key, GROUP, consumer, position, count, block_ms
            )
        messages: list[ControlMessage] = []
        bad: list[str] = []
        for sid, fields in entries:
            message = _parse(sid, fields)
            if message is None:
                log.warning(
                    "shard %s: dropping malformed control entry %s: %r", shard_id, sid, fields
                )
                bad.append(sid.decode())
            else:
                messages.append(message)
        if bad:
            await self.ack(shard_id, bad)
        return messages

    async def ack(self, shard_id: str, ids: Sequence[str]) -> int:
        """Acknowledge handled entries; returns how many were pending."""
        if not ids:
            return 0
        return int(await self.client.xack(self.keys.ctrl(shard_id), GROUP, *ids))

    async def trim(self, shard_id: str) -> int:
        """Remove entries below the oldest pending one (or up to the last delivered one
        when none is pending), atomically; returns how many were removed."""
        try:
            return int(await _TRIM(self.client, [self.keys.ctrl(shard_id)], [GROUP]))
        except ResponseError as e:
            if "NOGROUP" in str(e) or "no such key" in str(e):
                return 0
            raise
