"""Builds every part of one run of a shard, once, each with only what it uses.

The one place where storage meets the runtime: every adapter comes from the process's
`storage.Storage` front (so each carries the settings' prefix and limits), the command
adapters on its one command client and each blocking reader (log tail, control stream,
membership notices) on a small client of its own made by `front.blocking()`, which the
front closes. `ChangeLog`, `Registry`, `Deltas` and `PartitionTail` go in as the
engine's and loops' ports. Claims are tasks of the run's task group, so the parts are
built inside it; nothing is attached afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cluster.query import CursorSigner
from cluster.settings import QueryLimits, ShardSettings
from shard import Matcher
from storage import Membership, Storage

from .claims import Claims
from .clock import RedisClock
from .engine import Engine
from .events import Events
from .heap import Heap
from .loop_control import ControlLoop
from .loop_expiry import ExpiryLoop
from .loop_hygiene import HygieneLoop
from .loop_ownership import Notices, OwnershipLoop
from .loop_tail import TailLoop
from .oneshot import QueryServer
from .ownership import Ownership
from .publisher import Publisher
from .status import Reporter

__all__ = ["Parts", "build"]


@dataclass(frozen=True, slots=True)
class Parts:
    engine: Engine
    publisher: Publisher
    ownership: Ownership
    membership: Membership
    claims: Claims
    owner: OwnershipLoop
    notices: Notices
    tail: TailLoop
    control: ControlLoop
    expiry: ExpiryLoop
    hygiene: HygieneLoop
    reporter: Reporter
    queries: QueryServer


async def build(
    s: ShardSettings,
    front: Storage,
    limits: QueryLimits,
    inc: str,
    events: Events,
    group: asyncio.TaskGroup,
    *,
    status: Callable[[], dict[str, Any]],
) -> Parts:
    """The parts of a run (reads the cursor key and the notices' end from Redis); its
    three blocking readers' clients are made here, through `front`, which closes them."""
    tail, control, notices = front.blocking(), front.blocking(), front.blocking()
    signer = CursorSigner(await front.cursor_secret(s.cursor_secret))
    ownership = Ownership(s.shard_id, front.leases, s.lease_ttl_ms, s.lease_margin_ms)
    publisher = Publisher(front.deltas, ownership.serving, s.shard_id, inc,
                          s.publish_max_bytes, events)
    registry = front.registry
    engine = Engine(Matcher(signer), front.log, registry, publisher, signer, limits, events,
                    resume_max_entries=s.resume_max_entries, heap=Heap())
    membership = front.membership
    claims = Claims(engine, ownership, group, s.claim_concurrency, events)
    clock = RedisClock()
    owner = OwnershipLoop(
        shard_id=s.shard_id, heartbeat_ms=s.heartbeat_ms, member_ttl_ms=s.member_ttl_ms,
        membership=membership, ownership=ownership, engine=engine, claims=claims,
        clock=clock, run_id=front.server_run_id,
        status=lambda: orjson.dumps(status()), events=events,
    )
    watch = notices.membership
    tail_loop = TailLoop(
        feed=tail.tail, engine=engine, count=s.tail_count,
        block_ms=s.tail_block_ms, reclaim=claims.reclaim, clock=clock, events=events,
    )

    def live() -> Sequence[str]:
        return owner.live

    queries = QueryServer(
        engine=engine, marks=front.log, answers=front.deltas, signer=signer, limits=limits,
        fence=ownership.serving, clock=clock, group=group, events=events,
    )

    return Parts(
        engine=engine,
        publisher=publisher,
        ownership=ownership,
        membership=membership,
        claims=claims,
        owner=owner,
        notices=Notices(watch, s.shard_id, await watch.notices_tail_id(), owner.wake),
        tail=tail_loop,
        control=ControlLoop(
            shard_id=s.shard_id, block_ms=s.control_block_ms, control=control.control,
            engine=engine, fence=ownership.serving, live=live, events=events,
            queries=queries, verify=owner.check_restart,
        ),
        expiry=ExpiryLoop(
            interval_ms=s.expiry_interval_ms, engine=engine, serving=ownership.serving,
            due=front.due_rows, expire=front.rows.expire, clock=clock,
        ),
        hygiene=HygieneLoop(
            gateway_grace_ms=s.gateway_grace_ms, collection_idle_s=s.collection_idle_s,
            membership=membership, registry=registry, engine=engine, events=events,
        ),
        reporter=Reporter(engine, tail_loop, ownership, publisher),
        queries=queries,
    )
