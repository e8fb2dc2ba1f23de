"""One-shot queries asked of the owner shard, answered on this gateway's delta stream.

`POST /v1/entities/{e}/query` first asks the HRW owner of the query's partition
(a `query` control message with a request id `<gateway-id>.q<n>`, the tenant and the
query); the shard answers on `lq:delta:<gateway>` with the page or a `miss`
(`shard.runtime.oneshot`), and the demux hands the answer here. No answer (no live
owner, no delta stream yet, too many in flight, a miss, a timeout, a send that failed)
means None: the caller scans Redis, as before, so an answer never depends on a shard.

Invariants: at most `max_in_flight` requests wait at once (more are not asked); each
waits at most `timeout_s`; a request's future is removed when it ends, whatever ends it,
so a late answer finds nothing and is dropped; a shard that let a request time out is
not asked again for `cooldown_s` (a shard older than the op, or a stuck one, costs one
timeout per cool-down, not one per query). Every outcome is counted by `path`
(`memory`, `scan`: not asked, `fallback`: asked, then scanned) and `reason`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from cluster.query import Query
from storage import Answer

from ..context import Context

__all__ = ["Asks"]

MAX_IN_FLIGHT = 64
TIMEOUT_S = 0.25
COOLDOWN_S = 5.0


class Asks:
    def __init__(
        self,
        ctx: Context,
        gateway_id: str,
        owner_of: Callable[[int], str | None],
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        timeout_s: float = TIMEOUT_S,
        cooldown_s: float = COOLDOWN_S,
    ) -> None:
        self._ctx = ctx
        self._gateway_id = gateway_id
        self._owner_of = owner_of
        self._max = max_in_flight
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._counter = 0
        self._pending: dict[str, asyncio.Future[Answer]] = {}
        self._quiet_until: dict[str, float] = {}  # shard -> not asked before (monotonic)
        self.online = False  # the demux reads this gateway's delta stream

    def _count(self, path: str, reason: str) -> None:
        self._ctx.metrics.oneshot.labels(path, reason).inc()

    def scanned(self, reason: str) -> None:
        """The caller answered by a scan without asking (`reason`: why)."""
        self._count("scan", reason)

    def settle(self, answer: Answer) -> None:
        """An answer read from the delta stream (unknown or late ones are dropped)."""
        future = self._pending.get(answer.req)
        if future is not None and not future.done():
            future.set_result(answer)

    async def ask(self, p: int, tenant: str, query: Query) -> bytes | None:
        """The owner's page as the HTTP body, or None (counted) when the caller scans."""
        target = self._owner_of(p)
        if not self.online:
            self._count("scan", "no_stream")
            return None
        if target is None:
            self._count("scan", "no_owner")
            return None
        if self._quiet_until.get(target, 0.0) > time.monotonic():
            self._count("scan", "cooldown")
            return None
        if len(self._pending) >= self._max:
            self._count("scan", "busy")
            return None
        self._counter += 1
        req = f"{self._gateway_id}.q{self._counter}"
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        body = orjson.dumps({"tenant": tenant, "query": query.to_json()})
        try:
            control = self._ctx.storage().control
            await control.send_query(target, p, req, self._gateway_id, body)
            answer = await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            self._quiet_until[target] = time.monotonic() + self._cooldown_s
            self._count("fallback", "timeout")
            return None
        except Exception:  # a Redis fault: the scan meets it too and answers 503
            self._count("fallback", "send_failed")
            return None
        finally:
            self._pending.pop(req, None)
        if answer.page is None:
            self._count("fallback", answer.miss if answer.miss in _MISSES else "other")
            return None
        self._count("memory", "")
        return answer.page


_MISSES = frozenset({"not_owner", "not_loaded", "no_index", "expiring", "behind", "costly",
                     "too_large", "invalid", "busy", "error"})
"""The shard's miss reasons (`shard.runtime.oneshot`); any other is counted as `other`,
so the metric's labels stay bounded whatever a shard sends."""
