"""Builds every part of one run of a shard, once, each with only what it uses.

The one place where storage adapters meet the runtime: `ChangeLog`, `Registry`,
`Deltas` and `PartitionTail` go in as the engine's and loops' ports; Redis clients go in
by role (`main` for commands, one client per blocking reader). Claims are tasks of the
run's task group, so the parts are built inside it; nothing is attached afterwards.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cluster.query import CursorSigner
from cluster.settings import QueryLimits, ShardSettings, StorageSettings
from shard import Matcher
from storage import (
    ChangeLog,
    Control,
    Deltas,
    Leases,
    Membership,
    PartitionTail,
    RedisClient,
    Registry,
    RowStore,
    cursor_secret,
    due_rows,
    server_run_id,
)

from .claims import Claims
from .clock import RedisClock
from .engine import Engine
from .events import Events
from .loop_control import ControlLoop
from .loop_expiry import ExpiryLoop
from .loop_hygiene import HygieneLoop
from .loop_ownership import Notices, OwnershipLoop
from .loop_tail import TailLoop
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


async def build(
    s: ShardSettings,
    storage: StorageSettings,
    limits: QueryLimits,
    inc: str,
    events: Events,
    group: asyncio.TaskGroup,
    *,
    main: RedisClient,
    tail: RedisClient,
    control: RedisClient,
    notices: RedisClient,
    status: Callable[[], dict[str, Any]],
) -> Parts:
    """The parts of a run (reads the cursor key and the notices' end from Redis)."""
    prefix = storage.prefix
    signer = CursorSigner(await cursor_secret(main, prefix, s.cursor_secret))
    ownership = Ownership(s.shard_id, Leases(main, prefix), s.lease_ttl_ms, s.lease_margin_ms)
    publisher = Publisher(Deltas(main, prefix), ownership.serving, s.shard_id, inc,
                          s.publish_max_bytes, events)
    registry = Registry(main, prefix)
    engine = Engine(Matcher(signer), ChangeLog(main, storage), registry, publisher, signer,
                    limits, events)
    membership = Membership(main, prefix)
    claims = Claims(engine, ownership, group, s.claim_concurrency, events)
    clock = RedisClock()
    owner = OwnershipLoop(
        shard_id=s.shard_id, heartbeat_ms=s.heartbeat_ms, member_ttl_ms=s.member_ttl_ms,
        membership=membership, ownership=ownership, engine=engine, claims=claims,
        clock=clock, run_id=functools.partial(server_run_id, main),
        status=lambda: orjson.dumps(status()), events=events,
    )
    watch = Membership(notices, prefix)
    tail_loop = TailLoop(
        feed=PartitionTail(tail, storage), engine=engine, count=s.tail_count,
        block_ms=s.tail_block_ms, reclaim=claims.reclaim, clock=clock, events=events,
    )
    rows = RowStore(main, storage)

    def live() -> Sequence[str]:
        return owner.live

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
            shard_id=s.shard_id, block_ms=s.control_block_ms, control=Control(control, prefix),
            engine=engine, fence=ownership.serving, live=live, events=events,
        ),
        expiry=ExpiryLoop(
            interval_ms=s.expiry_interval_ms, engine=engine, serving=ownership.serving,
            due=functools.partial(due_rows, main, prefix), expire=rows.expire, clock=clock,
        ),
        hygiene=HygieneLoop(
            gateway_grace_ms=s.gateway_grace_ms, collection_idle_s=s.collection_idle_s,
            membership=membership, registry=registry, engine=engine, events=events,
        ),
        reporter=Reporter(engine, tail_loop, ownership, publisher),
    )
