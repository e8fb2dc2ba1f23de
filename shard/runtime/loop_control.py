"""The control loop: subscribe, unsubscribe, reanchor and resync from `lq:ctrl:<shard>`.

Read with this shard's consumer group: on start its own pending entries first (a
restart with the same id loses nothing), then new ones; every entry is acknowledged
after handling, also when handling failed (logged: the registry stays the truth and the
gateway re-sends on no answer). A message for a partition not served here, or fenced
(lapsed lease), is forwarded once (`hops`) to its HRW owner among the live shards; the
owner's claim reads the registry anyway, so a forward is only a nudge. A `query` (a
one-shot query asked of this shard) is never forwarded: `QueryServer` answers it, in a
task of its own, so a query waiting for the tail never holds up subscribes. Before it
handles a batch it has the ownership loop check Redis's run id (`verify`), so nothing is
answered from state read from a Redis that has restarted since (a subscribe so answered
would be reset again by the re-claim the restart causes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from cluster.partition import owner
from storage import Control, ControlMessage

from .engine import Engine
from .events import Events
from .oneshot import QueryServer

__all__ = ["ControlLoop"]

_BATCH = 100


class ControlLoop:
    def __init__(
        self,
        *,
        shard_id: str,
        block_ms: int,
        control: Control,
        engine: Engine,
        fence: Callable[[int, int], bool],
        live: Callable[[], Sequence[str]],
        events: Events,
        queries: QueryServer | None = None,
        verify: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._queries = queries
        self._verify = verify
        self._shard_id = shard_id
        self._block_ms = block_ms
        self._control = control
        self._engine = engine
        self._fence = fence
        self._live = live
        self._events = events

    async def pending(self) -> None:
        """Re-read this shard's own unacknowledged entries (a restart with the same id)."""
        await self._control.ensure_group(self._shard_id)
        after = "0"
        while True:
            msgs = await self._control.read(
                self._shard_id, self._shard_id, pending=True, count=_BATCH, after=after
            )
            if not msgs:
                return
            await self._handle_all(msgs)
            after = msgs[-1].entry_id

    async def once(self) -> None:
        msgs = await self._control.read(
            self._shard_id, self._shard_id, pending=False, count=_BATCH,
            block_ms=self._block_ms,
        )
        if msgs:
            await self._handle_all(msgs)
            await self._control.trim(self._shard_id)

    async def _handle_all(self, msgs: list[ControlMessage]) -> None:
        if self._verify is not None:
            try:
                await self._verify()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis unreachable: the handling reports it too
                self._events.error("control_verify_failed", error=repr(e))
        for msg in msgs:
            try:
                await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._events.error("control_failed", op=msg.op, p=msg.p, rid=msg.rid,
                                   error=repr(e))
        await self._control.ack(self._shard_id, [m.entry_id for m in msgs])

    async def _handle(self, msg: ControlMessage) -> None:
        if msg.op == "query":
            if self._queries is not None:
                await self._queries.take(msg)
            return
        part = await self._engine.settled(msg.p)
        if part is None or not self._fence(msg.p, part.epoch):
            # not ours, or fenced (lapsed lease): whoever claims it next reads the registry
            await self._forward(msg)
            return
        if msg.op == "unsubscribe":
            await self._engine.unsubscribe(part, msg.rid)
        else:
            await self._engine.subscribe(part, msg.rid, refresh=msg.op != "subscribe",
                                         reason=msg.op, pos=msg.pos)

    async def _forward(self, msg: ControlMessage) -> None:
        target = owner(msg.p, self._live())
        if msg.hops >= 1 or target is None or target == self._shard_id:
            return
        await self._control.send(target, msg.op, msg.p, msg.rid, msg.gw, hops=msg.hops + 1,
                                 pos=msg.pos)
