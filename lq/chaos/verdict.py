"""The end of a chaos run: heal, go quiet, and check every list against both oracles.

Invariants: the final check runs only when nothing is in flight (the writer settled,
every fault healed, every TTL written during the load past its expiry and the sweep's
grace, every subscription synced and idle for a second, or the wait timed out, which
is itself reported); lost acknowledged writes are scanned for once more first, so the
model holds what Redis holds; every subscription is compared twice, with the model
(`compare.final_diff`) and with a fresh HTTP query (`compare.http_diff`), and each
disagreement is a `divergence`; a version that went back (`check.Rewind`) is a `stale`
delivery unless Redis lost (or may have lost) the newer version in a fault that can
lose writes, in which case it is counted as excused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from lq.chaos import compare
from lq.chaos.check import Anomaly, SubCheck
from lq.chaos.faults import FaultRecord
from lq.chaos.settings import ChaosSettings
from lq.chaos.topology import Run
from lq.chaos.writer import Writer

__all__ = ["Final", "classify_rewinds", "finish"]

_GRACE_S = 3.0  # an expired row is deleted within this long (PROTOCOL.md: about two)


@dataclass
class Final:
    healed: list[str] = field(default_factory=list)
    unready: str = ""  # a process not ready at the end
    idle: bool = True
    http_checked: int = 0
    model_checked: int = 0
    lost_final: int = 0
    excused: int = 0  # version rewinds explained by a write Redis lost


async def _idle(subs: list[SubCheck], timeout: float) -> bool:
    """Until every subscription is synced and no message came for a second."""
    deadline = time.monotonic() + timeout
    last = -1
    still = 0.0
    while time.monotonic() < deadline:
        count = sum(s.messages for s in subs)
        synced = all(s.is_synced for s in subs)
        if synced and count == last:
            still += 0.25
            if still >= 1.0:
                return True
        else:
            still = 0.0
        last = count
        await asyncio.sleep(0.25)
    return False


async def _http_rows(http: httpx.AsyncClient, writer: Writer, sub: SubCheck
                     ) -> list[dict[str, Any]] | None:
    q = sub.query
    body: dict[str, Any] = {"where": q.get("where", {}), "sort": q.get("sort", [])}
    body["limit"] = q["limit"] if q.get("mode") == "window" else 1000
    if q.get("after"):
        body["after"] = q["after"]
    for url in writer.urls:
        try:
            r = await http.post(f"{url}/v1/entities/{q['entity']}/query", json=body,
                                headers={"Authorization": f"Bearer {writer.tokens[sub.tenant]}"})
        except httpx.TransportError:
            continue
        if r.status_code == 200:
            rows: list[dict[str, Any]] = r.json()["rows"]
            return rows
    return None


def classify_rewinds(subs: list[SubCheck], records: list[FaultRecord],
                     ghosts: Callable[[str, str, str, int], bool]) -> int:
    """Turn each unexplained version rewind into a `stale` anomaly; the excused count.
    `ghosts(tenant, entity, id, version)`: Redis lost that version (or never showed the
    writer it) and so a later state may be older."""
    excused = 0
    for sub in subs:
        for rw in sub.rewinds:
            lossy = any(rec.lossy and rec.start <= rw.t for rec in records)
            if lossy and ghosts(sub.tenant, sub.query["entity"], rw.row, rw.newer):
                excused += 1
                continue
            sub.anomalies.append(Anomaly("stale", sub.name, rw.t,
                                         f"{rw.row!r} went back v{rw.newer} -> v{rw.older}"))
    return excused


async def finish(s: ChaosSettings, run: Run, subs: list[SubCheck], writer: Writer,
                 check_pending: Callable[[], None], say: Callable[[str], None],
                 records: list[FaultRecord]) -> Final:
    final = Final(healed=run.heal())
    if not await writer.quiesce(60):
        say("the writer did not settle in 60 s")
    quiet = max(s.quiet, s.ttl_max + _GRACE_S + 1.0)
    say(f"load over; quiet for {quiet:.0f} s" + (f" (healed: {', '.join(final.healed)})"
                                                   if final.healed else ""))
    await asyncio.sleep(quiet)
    try:
        await run.wait_ready()
    except RuntimeError as e:  # a process that does not come back is a failed run
        final.unready = str(e).splitlines()[0]
    final.idle = await _idle(subs, 60)
    final.lost_final = await writer.scan_losses(time.time())
    check_pending()
    now = int(time.time() * 1e6)
    async with httpx.AsyncClient(timeout=10.0) as http:
        for sub in subs:
            listed, truncated = sub.listed(), sub.view.truncated
            if not sub.is_synced:
                sub.anomalies.append(Anomaly("divergence", sub.name, time.time(),
                                             "not synced at the end"))
                continue
            coll = writer.model.collection(sub.tenant, sub.query["entity"])
            why = compare.final_diff(sub.query, sub.anchor, listed, truncated, coll, now,
                                     int(_GRACE_S * 1e6))
            final.model_checked += 1
            if why is not None:
                sub.anomalies.append(Anomaly("divergence", sub.name, time.time(),
                                             f"final, against the model: {why}"))
            rows = await _http_rows(http, writer, sub)
            if rows is None:
                sub.anomalies.append(Anomaly("divergence", sub.name, time.time(),
                                             "final: the HTTP query failed"))
                continue
            final.http_checked += 1
            why = compare.http_diff(sub.query, listed, truncated, rows)
            if why is not None:
                sub.anomalies.append(Anomaly("divergence", sub.name, time.time(),
                                             f"final, against the HTTP query: {why}"))

    def ghost(tenant: str, entity: str, row_id: str, version: int) -> bool:
        h = writer.model.history(tenant, entity, row_id)
        return version not in h.versions() or any(
            w.ghost or w.maybe_lost for w in h.writes if w.version == version)

    final.excused = classify_rewinds(subs, records, ghost)
    return final
