"""One step of `lq bench e2e`: the writer process at one rate, then what reached the clients.

Invariants: a step ends when every write answered 200 has reached its client, or
`drain` seconds after the writer ended, whichever comes first; the writer process is
started in its own session, guarded like the cluster's children, and killed by its pid
if the step is cancelled (Ctrl-C) or it outlives `duration + 60` seconds. A step keeps
its samples only until `Step` is computed: the memory of a step is bounded by
`rate * duration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass

import orjson

from lq._orphan_guard import guarded
from lq.bench._e2e_clients import Clients
from lq.bench._e2e_writer import Plan, Result, where
from lq.bench._table import quantile

__all__ = ["Step", "keeps_up", "run_step"]


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one step; latencies in ms (nan when there is no sample)."""

    rate: float  # asked, writes/s
    achieved: float  # writes sent / duration
    acked: int  # writes answered 200
    errors: int  # writes answered otherwise, or not at all
    missing: int  # answered 200 and never delivered
    resets: int  # resets the clients got during the step
    ws: tuple[float, float, float]  # p50, p99, max
    sse: tuple[float, float, float]
    ack: tuple[float, float]  # the writes' HTTP round trip: p50, p99


def keeps_up(step: Step, p99_bound: float) -> bool:
    """The saturation rule: the writer held 95% of the asked rate, every write was
    answered 200 and delivered, no reset, and the WebSocket p99 is within the bound."""
    return (step.achieved >= 0.95 * step.rate and step.errors == 0 and step.missing == 0
            and step.resets == 0 and step.ws[1] <= p99_bound)


def _stats(samples: list[float]) -> tuple[float, float, float]:
    if not samples:
        return math.nan, math.nan, math.nan
    return quantile(samples, 0.5), quantile(samples, 0.99), max(samples)


async def _write(plan: Plan) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *guarded([sys.executable, "-c",
                  "from lq.bench._e2e_writer import main; main()",
                  orjson.dumps(asdict(plan)).decode()]),
        stdout=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), plan.duration + 60)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the writer process failed (exit {proc.returncode})")
    return Result(**orjson.loads(out))


async def run_step(clients: Clients, plan: Plan, drain: float) -> Step:
    deliveries = clients.deliveries
    deliveries.clear()
    resets = deliveries.resets
    result = await _write(plan)
    kinds = {n: clients.kind_of(where(n, plan.collections, plan.slots)[0]) for n in result.ok}
    deadline = time.monotonic() + drain
    while any(n not in deliveries.latency[k] for n, k in kinds.items()):
        clients.check()
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    by_kind: dict[str, list[float]] = {"ws": [], "sse": []}
    missing = 0
    for n, kind in kinds.items():
        ms = deliveries.latency[kind].get(n)
        if ms is None:
            missing += 1
        else:
            by_kind[kind].append(ms)
    return Step(
        rate=plan.rate, achieved=result.sent / plan.duration, acked=len(result.ok),
        errors=sum(result.errors.values()), missing=missing,
        resets=deliveries.resets - resets,
        ws=_stats(by_kind["ws"]), sse=_stats(by_kind["sse"]),
        ack=_stats(result.ack_ms)[:2],
    )
