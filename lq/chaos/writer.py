"""The writer of a chaos run: a seeded stream of puts, patches, deletes and TTL puts
through the HTTP API of the gateways, every outcome recorded in the `Model`.

Invariants:
- the writer is the only writer of its rows, and at most one of its writes per row is
  in flight (a row is locked from the request until its outcome is known), so a row's
  history in the model is a sequence, never a race;
- an acknowledged write (200) is recorded with its version; a refused one (404: the row
  is gone, an expired TTL) records nothing; a write whose outcome is unknown (the
  connection broke after sending, a timeout, a 503) is *read back* until a gateway
  answers, and recorded as what Redis shows (applied at the version read, not applied,
  or, for a delete, applied somewhere between the last known version and the read);
- a request that could not connect was never sent, and goes to the next gateway;
- `quiesce()` waits until nothing is in flight or unresolved (bounded), so a loss scan
  or the final check sees a settled model.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from lq.chaos.model import Model, Write, merge_patch

__all__ = ["Writer", "WriterStats", "random_row"]

_STATUSES = ["open", "doing", "done"]
_NAMES = ["ada", "bob", "cy", "dee", "eve"]
_WORDS = ["alpha", "beta", "gamma", "delta", "apex", "bolt", "cedar", "dune"]
_IN_FLIGHT = 16
_READ_BACK_S = 120.0  # a write of unknown outcome is read back for at most this long
Key = tuple[str, str, str]


def random_row(rng: random.Random) -> dict[str, Any]:
    """A row over a small domain, so filters and sorts see ties, missing fields, kinds."""
    row: dict[str, Any] = {"status": rng.choice(_STATUSES), "priority": rng.randint(1, 5),
                           "n": rng.randint(0, 1000),
                           "title": f"{rng.choice(_WORDS)} {rng.randint(0, 99)}"}
    if rng.random() < 0.7:
        row["owner"] = {"name": rng.choice(_NAMES)}
    if rng.random() < 0.2:
        del row["priority"]
    if rng.random() < 0.1:
        row["n"] = float(row["n"]) + 0.5
    if rng.random() < 0.5:  # large values: compressed in Redis, and they fill buffers
        row["text"] = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(50, 400)))
    return row


def _patch(rng: random.Random) -> dict[str, Any]:
    return rng.choice([{"status": rng.choice(_STATUSES)}, {"priority": rng.randint(1, 5)},
                       {"priority": None}, {"owner": {"name": rng.choice(_NAMES)}},
                       {"n": rng.randint(0, 1000), "title": f"{rng.choice(_WORDS)} 0"}])


def _outcome(r: httpx.Response) -> str | None:
    """The `outcome` field of an error answer, if any."""
    try:
        error = r.json().get("error")
    except ValueError:
        return None
    return error.get("outcome") if isinstance(error, dict) else None


@dataclass
class WriterStats:
    acked: int = 0
    refused: int = 0  # 404: the row was gone (an expired TTL)
    unknown: int = 0  # outcome read back
    unknown_applied: int = 0
    outcome_unknown: int = 0  # 503s saying "outcome": "unknown" (PROTOCOL.md 7)
    # 503s that did not say so (nothing was written, says the protocol) yet were applied
    applied_after_503: list[str] = field(default_factory=list)
    internal: list[str] = field(default_factory=list)  # 500s (outcome read back)
    errors: list[str] = field(default_factory=list)  # what the model cannot explain


class Writer:
    """See the module docstring. `urls` are the gateways; `tokens` by tenant."""

    def __init__(self, model: Model, urls: list[str], tokens: dict[str, str],
                 collections: list[tuple[str, str]], ids: int, seed: int,
                 ttl_s: tuple[float, float]) -> None:
        self.model = model
        self.urls = urls
        self.tokens = tokens
        self.collections = collections
        self.ids = [f"r{i:02d}" for i in range(ids)]
        self.rng = random.Random(seed)
        self.ttl_s = ttl_s
        self.stats = WriterStats()
        self.busy: set[Key] = set()
        self.unresolved: dict[Key, float] = {}  # key -> when its write was sent
        self.next_url = 0
        self.paused = False  # no new write starts (a loss scan is under way)
        self.boost = 1.0  # the rate's factor (a burst while a client is slow)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0),
                                      limits=httpx.Limits(max_connections=64))

    async def aclose(self) -> None:
        await self.http.aclose()

    def settled_before(self, t: float) -> bool:
        """No write sent before wall-clock `t` is still in flight or unresolved."""
        return all(sent >= t for sent in self.unresolved.values())

    async def run(self, rate: float, until: float, group: asyncio.TaskGroup) -> None:
        """Writes at `rate` (times `boost`) per second until monotonic `until`."""
        last, credit = time.monotonic(), 0.0
        while (now := time.monotonic()) < until:
            credit += (now - last) * rate * self.boost
            last = now
            while credit >= 1:
                credit -= 1
                if len(self.busy) < _IN_FLIGHT and not self.paused:
                    self.start_one(group)
            await asyncio.sleep(0.01)

    def start_one(self, group: asyncio.TaskGroup) -> None:
        """Pick a free row and start a write to it (seeded; skipped when all are busy)."""
        for _ in range(8):
            tenant, entity = self.rng.choice(self.collections)
            key = (tenant, entity, self.rng.choice(self.ids))
            if key not in self.busy:
                self.busy.add(key)
                op, body, ttl = self._choose(key)
                group.create_task(self._write(key, op, body, ttl))
                return

    async def write_now(self, key: Key) -> None:
        """One put of a fresh row to `key`, awaited (seeding the collections)."""
        self.busy.add(key)
        await self._write(key, "PUT", random_row(self.rng), None)

    def _choose(self, key: Key) -> tuple[str, dict[str, Any] | None, float | None]:
        current = self.model.current(*key)
        r = self.rng.random()
        ttl = round(self.rng.uniform(*self.ttl_s), 2)
        if current is None:
            return "PUT", random_row(self.rng), ttl if r < 0.25 else None
        if r < 0.4:
            return "PUT", random_row(self.rng), ttl if r < 0.05 else None
        if r < 0.75:
            return "PATCH", _patch(self.rng), None
        return "DELETE", None, None

    async def _send(self, key: Key, method: str, body: dict[str, Any] | None,
                    ttl: float | None) -> httpx.Response:
        tenant, entity, row_id = key
        headers = {"Authorization": f"Bearer {self.tokens[tenant]}"}
        params = {"ttl": str(ttl)} if ttl is not None else None
        last: Exception | None = None
        for _ in range(len(self.urls)):
            url = self.urls[self.next_url % len(self.urls)]
            self.next_url += 1
            try:
                return await self.http.request(
                    method, f"{url}/v1/entities/{entity}/rows/{row_id}", json=body,
                    params=params, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # never sent
                last = e
        raise last or RuntimeError("no gateway")

    async def _write(self, key: Key, method: str, body: dict[str, Any] | None,
                     ttl: float | None) -> None:
        sent = time.time()
        self.unresolved[key] = sent
        before = self.model.history(*key).latest()
        if method == "PUT":
            values: dict[str, Any] | None = body
        elif method == "PATCH":
            values = merge_patch(None if before is None else before.values, body or {})
        else:
            values = None
        expires_s = ttl if method == "PUT" else None
        keep = before.expires if method == "PATCH" and before is not None else None
        try:
            try:
                r = await self._send(key, method, body, ttl)
            except (httpx.TransportError, RuntimeError):
                await self._read_back(key, values, expires_s, keep, sent, None)
                return
            if r.status_code == 200:
                version = int(r.json()["version"])
                expires = (version + int(expires_s * 1e6) - 50_000 if expires_s is not None
                           else keep)
                self.model.record(key, Write(version, values, expires))
                self.stats.acked += 1
            elif r.status_code == 404 and method != "PUT":
                self.stats.refused += 1
            elif r.status_code >= 500:
                if r.status_code != 503:
                    self.stats.internal.append(f"{method} {key}: HTTP {r.status_code} "
                                               f"{r.text[:200]}")
                said_none = r.status_code == 503 and _outcome(r) != "unknown"
                self.stats.outcome_unknown += r.status_code == 503 and not said_none
                await self._read_back(key, values, expires_s, keep, sent,
                                      503 if said_none else None)
            else:
                self.stats.errors.append(f"{method} {key}: HTTP {r.status_code} {r.text[:200]}")
        finally:
            self.unresolved.pop(key, None)
            self.busy.discard(key)

    async def _read_back(self, key: Key, values: dict[str, Any] | None,
                         expires_s: float | None, keep: int | None, sent: float,
                         status: int | None) -> None:
        """Resolve a write of unknown outcome by reading the row until a gateway answers."""
        self.stats.unknown += 1
        tenant, entity, row_id = key
        before = self.model.history(*key).latest()
        deadline = time.monotonic() + _READ_BACK_S
        while True:
            await asyncio.sleep(0.3)
            with contextlib.suppress(httpx.TransportError, RuntimeError):
                r = await self._get(tenant, entity, row_id)
                if r.status_code in (200, 404):
                    break
            if time.monotonic() > deadline:
                self.stats.errors.append(f"{key}: no gateway answered a read for "
                                         f"{_READ_BACK_S:.0f} s; its outcome is unknown")
                return
        read_at = int(time.time() * 1e6) + 100_000
        if r.status_code == 404:
            if before is not None and before.values is not None and before.expires is None:
                # gone without an expiry: our delete (or a loss a scan will explain)
                self.model.record(key, Write(read_at, None, since=before.version + 1,
                                             acked=False))
                self.stats.unknown_applied += values is None
            return
        found = r.json()
        version, row = int(found["version"]), found["row"]
        if version in self.model.history(*key).versions() or (
                before is not None and version < before.version):
            return  # not applied (an older state: Redis lost writes, the scan says which)
        expires = (version + int(expires_s * 1e6) - 50_000 if expires_s is not None else keep)
        self.model.record(key, Write(version, row, expires, acked=False))
        self.stats.unknown_applied += 1
        if row != values:
            self.stats.errors.append(f"read back {key}: v{version} {row}, sent {values}")
        if status == 503:
            self.stats.applied_after_503.append(f"{key} v{version} (sent at {sent:.3f})")

    async def _get(self, tenant: str, entity: str, row_id: str) -> httpx.Response:
        url = self.urls[self.next_url % len(self.urls)]
        self.next_url += 1
        return await self.http.get(f"{url}/v1/entities/{entity}/rows/{row_id}",
                                   headers={"Authorization": f"Bearer {self.tokens[tenant]}"})

    async def quiesce(self, timeout: float = 60.0) -> bool:
        """Until nothing is in flight; False when that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def query_all(self, tenant: str, entity: str) -> list[dict[str, Any]] | None:
        """Every row of a collection (up to 1000), by a one-shot query through some
        gateway; None when none answered."""
        for _ in range(len(self.urls)):
            url = self.urls[self.next_url % len(self.urls)]
            self.next_url += 1
            with contextlib.suppress(httpx.TransportError):
                r = await self.http.post(
                    f"{url}/v1/entities/{entity}/query", json={"limit": 1000},
                    headers={"Authorization": f"Bearer {self.tokens[tenant]}"})
                if r.status_code == 200:
                    rows: list[dict[str, Any]] = r.json()["rows"]
                    return rows
        return None

    async def scan_losses(self, since: float, timeout: float = 60.0) -> int:
        """Pause, let every write settle, read every collection back and turn what Redis
        no longer holds into ghosts (`Model.reconcile`), lost by a fault that began at
        `since` (wall clock); the acknowledged writes lost."""
        self.paused = True
        try:
            await self.quiesce(timeout)
            lost = 0
            deadline = time.monotonic() + timeout
            for tenant, entity in self.collections:
                while (rows := await self.query_all(tenant, entity)) is None:
                    if time.monotonic() > deadline:
                        self.stats.errors.append(f"loss scan: {tenant}/{entity} unread")
                        break
                    await asyncio.sleep(0.3)
                if rows is None:
                    continue
                found = {r["id"]: (int(r["version"]), r["row"]) for r in rows}
                # after the read (and a margin): a TTL that may have expired by then explains
                # its row's absence (a lost TTL write near its expiry goes unseen: lenient)
                now = int(time.time() * 1e6) + 200_000
                ids = set(found) | set(self.model.collection(tenant, entity))
                for row_id in sorted(ids):
                    gone = self.model.reconcile((tenant, entity, row_id), found.get(row_id),
                                                int(since * 1e6), now)
                    lost += sum(1 for w in gone if w.acked)
            return lost
        finally:
            self.paused = False
