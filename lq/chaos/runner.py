"""One chaos run from start to verdict: start the processes, seed the data, subscribe
the clients, write and inject faults for `duration` seconds, go quiet, check every
list, and hand the numbers to `report`.

Invariants: every task (writer, fault driver, checker, progress, clients) belongs to
one TaskGroup and ends by the run's `stop` event or its own bound; every process is
ended by `Run.close()` whatever happens (an error, Ctrl-C); a snapshot is compared
only once the model is settled up to its time (no write sent before it still
unresolved, no loss scan pending for a fault before it), so a check never races the
writer's knowledge; faults run one after another at their planned times (or as soon as
the previous one has run its course).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.auth import issue_token
from lq.chaos import compare, verdict
from lq.chaos.check import Anomaly, SubCheck
from lq.chaos.faults import FaultRecord, inject
from lq.chaos.model import Model, describe
from lq.chaos.schedule import Fault, plan
from lq.chaos.settings import ChaosSettings
from lq.chaos.topology import Run
from lq.chaos.workload import collections, make_clients
from lq.chaos.writer import Writer

__all__ = ["Outcome", "run_chaos"]

_SNAPSHOT_LAG_S = 15.0  # how much older than its reset a snapshot may be
_UNDECIDED_S = 3.0  # a reset after a lossy fault is expected within this at least
_RESTARTS = frozenset({"redis", "failover"})  # faults after which lost writes are scanned for


@dataclass
class Outcome:
    """Everything the report needs."""

    settings: ChaosSettings
    plan: list[Fault]
    records: list[FaultRecord] = field(default_factory=list)
    subs: list[SubCheck] = field(default_factory=list)
    writer: Writer | None = None
    model: Model = field(default_factory=Model)
    load_s: float = 0.0
    quiet_s: float = 0.0
    snapshots: int = 0
    final: verdict.Final | None = None
    harness: list[str] = field(default_factory=list)  # the harness's own troubles
    harness_notes: list[str] = field(default_factory=list)  # what it could not decide


class _Loop:
    """The load phase: the fault driver, the checks that wait for the model to settle
    (snapshots at `synced`, lists holding lost writes), and the progress lines."""

    def __init__(self, out: Outcome, writer: Writer, say: Callable[[str], None],
                 journal: Callable[[dict[str, Any]], None]) -> None:
        self.journal = journal
        self.out = out
        self.writer = writer
        self.say = say
        self.scan_from: float | None = None  # a loss scan is due for faults from here
        self.t0 = time.time()
        # lists that held a write Redis then lost: each must see a reset after the fault
        self.ghost_checks: list[tuple[FaultRecord, list[tuple[SubCheck, str]]]] = []
        self.ghost_wait = 3 * out.settings.lease_s + 4.0

    def settled(self, t: float) -> bool:
        return self.writer.settled_before(t) and (self.scan_from is None
                                                  or t < self.scan_from)

    def check_snapshots(self) -> None:
        for sub in self.out.subs:
            ready = [s for s in sub.snapshots if self.settled(s.t)]
            for snap in ready:
                sub.snapshots.remove(snap)
                coll = self.out.model.collection(sub.tenant, sub.query["entity"])
                # after a Redis restart and the scan that followed it, no snapshot may
                # show the data from before the restart (what it may have lost)
                lo = int(max([snap.reset_t - _SNAPSHOT_LAG_S,
                              *(r.start for r in self.out.records
                                if r.scanned and snap.reset_t >= r.scanned)]) * 1e6)
                why = compare.snapshot_diff(sub.query, sub.anchor, snap.rows, snap.truncated,
                                            coll, lo, int((snap.t + 0.5) * 1e6))
                self.out.snapshots += 1
                if why is not None:
                    sub.anomalies.append(Anomaly("divergence", sub.name, snap.t,
                                                 f"snapshot at synced: {why}"))
                    self.journal({"divergence": sub.name, "t": snap.t, "why": why,
                                  "reset_t": snap.reset_t, "query": sub.query,
                                  "listed": [(r, v) for r, v, _ in snap.rows],
                                  "window": [lo, int((snap.t + 0.5) * 1e6)],
                                  "rows": {rid: [describe(w) for w in h.writes]
                                           for rid, h in coll.items()}})

    def held_ghosts(self, sub: SubCheck) -> list[str]:
        model = self.out.model
        return [f"{rid!r} v{ver}" for rid, ver, _ in sub.listed()
                if any(w.ghost and w.version == ver for w in
                       model.history(sub.tenant, sub.query["entity"], rid).writes)]

    def check_ghosts(self, force: bool = False) -> None:
        """Protocol rule 3: a list still holding a write Redis lost when the scan after
        the fault found the loss must be reset (the cluster cannot prove continuity),
        within `ghost_wait` s of the scan and before the next fault (whose own resets
        would hide a missing one); when the next fault came within `_UNDECIDED_S` of
        the scan, that cannot be told, and the check is skipped."""
        now = time.time()
        for item in list(self.ghost_checks):
            rec, holders = item
            later = [r.start for r in self.out.records if r.start > rec.start]
            deadline = min([rec.scanned + self.ghost_wait, *later])
            if not force and now < deadline:
                continue
            self.ghost_checks.remove(item)
            if deadline - rec.scanned < _UNDECIDED_S:
                self.out.harness_notes.append(
                    f"{rec.fault.describe()}: the next fault came too soon to tell whether "
                    f"the lists holding lost writes were reset")
                continue
            for sub, rows in holders:
                if not any(rec.scanned <= t < deadline for t in sub.restarts):
                    sub.anomalies.append(Anomaly(
                        "divergence", sub.name, time.time(),
                        f"held {rows}, lost by Redis in the {rec.fault.kind} fault at "
                        f"{rec.start - self.t0:.1f}s, and got no reset in the "
                        f"{deadline - rec.scanned:.1f} s after the loss was found"))

    def check_all(self) -> None:
        self.check_snapshots()
        self.check_ghosts(force=True)

    async def checker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.check_snapshots()
            self.check_ghosts()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def faults(self, run: Run, faults: list[Fault]) -> None:
        start = time.monotonic()
        for f in faults:
            await asyncio.sleep(max(0.0, start + f.t - time.monotonic()))
            if f.kind in _RESTARTS:  # snapshots from now on wait for the loss scan
                self.scan_from = time.time()
            try:
                rec = await inject(run, f)
            except Exception as e:  # the harness failed, not the system: say so
                self.out.harness.append(f"{f.describe()}: {e!r}")
                rec = FaultRecord(f, time.time(), time.time(), f"injection failed: {e!r}")
            self.out.records.append(rec)
            self.journal({"fault": f.describe(), "start": rec.start, "end": rec.end,
                          "note": rec.note})
            self.say(f"[{rec.start - self.t0:6.1f}s] fault {f.describe()}"
                     + (f": {rec.note}" if rec.note else ""))
            if rec.restarted:
                await self._scan(rec)
            self.scan_from = None
            self.writer.paused = False  # paused by a Redis fault until its scan

    async def _scan(self, rec: FaultRecord) -> None:
        """After a Redis restart or failover: which acknowledged writes Redis lost, and
        which lists hold one of them now (each must be reset: `check_ghosts`)."""
        rec.lost = await self.writer.scan_losses(rec.start)
        rec.scanned = time.time()
        holders = [(sub, ", ".join(rows)) for sub in self.out.subs
                   if (rows := self.held_ghosts(sub))]
        if holders:
            self.ghost_checks.append((rec, holders))
        self.journal({"scanned": rec.fault.describe(), "t": rec.scanned, "lost": rec.lost,
                      "holders": [sub.name for sub, _ in holders]})
        self.say(f"[{time.time() - self.t0:6.1f}s]   loss scan after it: {rec.lost} "
                 f"acknowledged writes lost, {len(holders)} lists held lost writes")

    async def progress(self, every: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            subs = self.out.subs
            bad = sum(len(s.anomalies) for s in subs)
            self.say(f"[{time.time() - self.t0:6.1f}s] writes {self.writer.stats.acked}, "
                     f"messages {sum(s.messages for s in subs)}, resets "
                     f"{sum(len(s.resets) for s in subs)}, faults {len(self.out.records)}/"
                     f"{len(self.out.plan)}, snapshots checked {self.out.snapshots}, "
                     f"anomalies {bad}")


async def _seed(writer: Writer, share: float = 0.6) -> None:
    keys = [(t, e, i) for t, e in writer.collections for i in writer.ids[:int(len(writer.ids)
                                                                            * share)]]
    for at in range(0, len(keys), 32):
        await asyncio.gather(*(writer.write_now(k) for k in keys[at:at + 32]))


async def _all_synced(subs: list[SubCheck], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(s.is_synced for s in subs):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def run_chaos(s: ChaosSettings, say: Callable[[str], None]) -> Outcome:
    out = Outcome(s, plan(s.plan_settings()))
    run_dir = Path(tempfile.mkdtemp(prefix="lq-chaos-", dir=s.logs))
    say(f"lq chaos: seed {s.seed}, {len(out.plan)} faults planned, run directory {run_dir}")
    run = Run(s, run_dir)
    failed = True
    journal = open(run_dir / "journal.jsonl", "ab")  # every write, loss, fault, divergence

    def note(record: dict[str, Any]) -> None:
        journal.write(orjson.dumps(record, default=str) + b"\n")

    out.model.journal = note
    try:
        run.start()
        await run.wait_ready()
        say(f"up: redis {s.redis} (appendfsync {s.fsync}), {s.shards} shards, "
            f"{s.gateways} gateways")
        await _run(s, run, out, say)
        failed = False
        return out
    finally:
        journal.close()
        if failed:
            say(run.logs())
        await run.close()
        if s.logs is None and not failed:
            shutil.rmtree(run_dir, ignore_errors=True)


async def _run(s: ChaosSettings, run: Run, out: Outcome, say: Callable[[str], None]) -> None:
    tokens = {f"t{i}": issue_token(run.secret, f"t{i}", "lq:read:* lq:write:*",
                                   s.duration + 3600) for i in range(s.tenants)}
    writer = Writer(out.model, run.urls, tokens, collections(s), s.ids, s.seed,
                    (s.ttl_min, s.ttl_max))
    out.writer = run.writer = writer
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=4 * s.clients + 16)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as http:
        await _seed(writer)
        run.clients = await make_clients(s, run.urls, tokens, http)
        out.subs = [sub for c in run.clients for sub in c.subs]
        loop = _Loop(out, writer, say, out.model.journal or (lambda _: None))
        try:
            async with asyncio.TaskGroup() as group:
                for client in run.clients:
                    group.create_task(client.run(stop))
                if not await _all_synced(out.subs, 60):
                    out.harness.append("not every subscription synced within 60 s")
                group.create_task(loop.checker(stop))
                group.create_task(loop.progress(s.progress, stop))
                load = time.monotonic()
                loop.t0 = time.time()
                async with asyncio.TaskGroup() as load_group:
                    load_group.create_task(writer.run(s.rate, load + s.duration, load_group))
                    load_group.create_task(loop.faults(run, out.plan))
                out.load_s = time.monotonic() - load
                out.final = await verdict.finish(s, run, out.subs, writer, loop.check_all,
                                                 say, out.records)
                out.quiet_s = time.monotonic() - load - out.load_s
                stop.set()
        finally:
            stop.set()
            await writer.aclose()
