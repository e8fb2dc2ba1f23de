"""Delta streams: shard -> gateway frames on `lq:delta:<gateway>` (DESIGN.md 5, 5b).

Wire format of one entry (one frame: one partition, one batch): `shard`, `inc`, `n`,
`p`, `epoch`, then per group i `r<i>` (JSON array of registry ids) and `m<i>` (the
view's already-encoded JSON array of messages, sent as is: a view's delta is encoded
once and its bytes shared by every frame that carries it). A marker entry (`mark`) has
no frame. An answer entry (`ans`: a one-shot query's request id, then `page`: the HTTP
answer's JSON, or `miss`: why the shard did not answer) is no frame either: it carries
no `n` and never counts in the frame sequence. Invariants: only the gateway creates its
stream (and keeps an EXPIRE on it); shards add with NOMKSTREAM, so a dead gateway's
stream is never resurrected. The gateway's position is always a real entry id (`create`
adds a marker to a new stream), so a trimmed position is told by its entry being gone,
as for the change log: with `MAXLEN ~ maxlen` a read shorter than its COUNT (< maxlen)
cannot have skipped any. Publishers and readers must use the same `maxlen`:
`StorageSettings.delta_maxlen`, which the `storage.Storage` front passes to every
`Deltas` it builds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cluster.keys import Keys
from cluster.settings import DEFAULT_DELTA_MAXLEN

from . import _lua, _streams
from .connection import RedisClient

__all__ = [
    "Answer", "DeltaFrame", "DeltaRead", "DeltaStreamGone", "DeltaTrimmed", "Deltas", "Group",
]

log = logging.getLogger(__name__)

_CREATE = _lua.load("delta_create")

Group = tuple[tuple[str, ...], bytes]
"""(registry ids, encoded JSON array of messages without `sub` and `seq`)."""


class DeltaStreamGone(Exception):
    """The gateway's stream does not exist: re-create it and resync everything."""


class DeltaTrimmed(Exception):
    """The read position was trimmed away: frames may be lost; resync everything."""


@dataclass(frozen=True, slots=True)
class DeltaFrame:
    """`n` counts from 1 per (shard incarnation `inc`, gateway stream)."""

    shard: str
    inc: str
    n: int
    p: int
    epoch: int
    groups: tuple[Group, ...]

    def fields(self) -> dict[str, bytes | str | int]:
        """The XADD fields; message bytes are passed through, never re-encoded."""
        out: dict[str, bytes | str | int] = {
            "shard": self.shard,
            "inc": self.inc,
            "n": self.n,
            "p": self.p,
            "epoch": self.epoch,
        }
        for i, (rids, messages) in enumerate(self.groups):
            out[f"r{i}"] = orjson.dumps(rids)
            out[f"m{i}"] = messages
        return out

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> DeltaFrame:
        groups: list[Group] = []
        while (rids := fields.get(b"r%d" % len(groups))) is not None:
            groups.append((tuple(orjson.loads(rids)), fields[b"m%d" % len(groups)]))
        return cls(
            shard=fields[b"shard"].decode(),
            inc=fields[b"inc"].decode(),
            n=int(fields[b"n"]),
            p=int(fields[b"p"]),
            epoch=int(fields[b"epoch"]),
            groups=tuple(groups),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """A shard's answer to a one-shot query: `page` (the HTTP body) or a `miss` reason."""

    req: str
    page: bytes | None
    miss: str = ""


@dataclass(frozen=True, slots=True)
class DeltaRead:
    frames: list[DeltaFrame]
    position: str
    answers: tuple[Answer, ...] = ()


class Deltas:
    """Both ends of the delta streams under one key prefix and one `maxlen`.

    `maxlen` keeps a default only while the gateway still builds its own `Deltas`
    (it is `StorageSettings.delta_maxlen`'s default); built through the front, it is
    always the setting.
    """

    def __init__(
        self, client: RedisClient, prefix: str, maxlen: int = DEFAULT_DELTA_MAXLEN
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.maxlen = maxlen

    async def publish(self, frames: Sequence[tuple[str, DeltaFrame]]) -> list[bool]:
        """XADD each (gateway, frame) with NOMKSTREAM in one pipeline; per frame, whether
        it was added (False: the gateway's stream is gone, the frame is dropped)."""
        if not frames:
            return []
        pipe: Any = self.client.pipeline(transaction=False)
        for gateway, frame in frames:
            pipe.xadd(
                self.keys.delta(gateway),
                frame.fields(),
                maxlen=self.maxlen,
                approximate=True,
                nomkstream=True,
            )
        replies: list[Any] = await pipe.execute()
        return [r is not None for r in replies]

    async def answer(self, gateway: str, answer: Answer) -> bool:
        """XADD a one-shot query's answer with NOMKSTREAM; False when the stream is gone."""
        fields: dict[str, bytes | str] = {"ans": answer.req}
        if answer.page is not None:
            fields["page"] = answer.page
        else:
            fields["miss"] = answer.miss
        reply = await self.client.xadd(
            self.keys.delta(gateway), fields,  # type: ignore[arg-type]
            maxlen=self.maxlen, approximate=True, nomkstream=True,
        )
        return reply is not None

    async def create(self, gateway: str, ttl_s: int) -> str:
        """Create the stream (or keep an existing one) with an expiry; the position to
        read from (its last entry)."""
        sid = await _CREATE(self.client, [self.keys.delta(gateway)], [ttl_s, self.maxlen])
        return sid.decode() if isinstance(sid, bytes) else str(sid)

    async def refresh(self, gateway: str, ttl_s: int) -> bool:
        """Push the expiry out; False when the stream is gone (re-create and resync)."""
        return bool(await self.client.expire(self.keys.delta(gateway), ttl_s))

    async def read(
        self, gateway: str, after_id: str, count: int = 500, block_ms: int = 1000
    ) -> DeltaRead:
        """Frames after `after_id`, waiting up to `block_ms`. Raises DeltaStreamGone when
        the stream no longer exists (noticed when a wait ends empty) and DeltaTrimmed
        when frames after `after_id` may have been trimmed away. Blocks a connection:
        call it on a client kept for blocking reads."""
        key = self.keys.delta(gateway)
        entries = await _streams.xread(self.client, key, after_id, count, block_ms)
        if not entries:
            if not await self.client.exists(key):
                raise DeltaStreamGone(f"delta stream of gateway {gateway} is gone")
            return DeltaRead([], after_id)
        full = len(entries) >= count or count >= self.maxlen
        if full and not await _streams.entry_exists(self.client, key, after_id):
            raise DeltaTrimmed(f"delta stream of gateway {gateway}: {after_id} was trimmed")
        frames: list[DeltaFrame] = []
        answers: list[Answer] = []
        for sid, fields in entries:
            if b"mark" in fields:
                continue
            if b"ans" in fields:
                page = fields.get(b"page")
                miss = fields.get(b"miss", b"").decode(errors="replace")
                answers.append(Answer(fields[b"ans"].decode(errors="replace"), page, miss))
                continue
            try:
                frames.append(DeltaFrame.from_fields(fields))
            except (KeyError, ValueError, orjson.JSONDecodeError, UnicodeDecodeError):
                # Skipped frames show as a gap in `n`, which the gateway repairs by resync.
                log.warning("gateway %s: dropping malformed delta entry %s", gateway, sid)
        return DeltaRead(frames, entries[-1][0].decode(), tuple(answers))
