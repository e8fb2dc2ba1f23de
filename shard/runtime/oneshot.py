"""One-shot queries answered from memory: the shard side of `op=query` control messages.

A gateway asks the HRW owner of a query's partition (a control message carrying a
request id, the tenant and the query) and scans Redis itself when no answer comes in
time. The owner answers on the gateway's delta stream with the page, or at once with a
`miss` saying why not (`not_owner`, `not_loaded`, `no_index`, `expiring`, `behind`,
`costly`, `too_large`, `invalid`, `busy`, `error`), so the gateway falls back without
waiting for its timeout. Invariants:
- **Consistent point**: the page is computed with no await in between (`first_rows`),
  so it is the collection as of one applied log position P of its partition. Before
  computing, the shard reads the log's end E and Redis's time with one script
  (`QueryMarks.query_mark`) and waits until P >= E (at most `wait_s`; else `behind`).
  Every write acknowledged before the query reached the shard is at or before E, so an
  answer always holds the caller's own acknowledged writes (read-your-writes). Rows
  expired by that Redis time and still stored are hidden, exactly as the scan hides
  them with the time it reads first.
- **Same answer as the scan**: the query is parsed and validated by `cluster.query`
  (the gateway's own parser), and the page made by `cluster.query.page_of`, the rule
  the scan uses: same rows, versions, values, order, cursors and `next`.
- **Bounded**: at most `concurrency` queries are in their task at once (one more gets a
  `busy` miss, sent by the control loop itself); each tests at most `budget` rows; an
  answer is at most `max_bytes` (else `too_large`); a request older than `stale_s` by
  Redis's clock (re-read after a restart) is dropped unanswered: its gateway has
  scanned already. Tasks belong to the run's TaskGroup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import orjson

from cluster.errors import LiveQueryError
from cluster.query import CursorSigner, Query, page_of, parse_query
from cluster.settings import QueryLimits
from shard import first_rows
from storage import Answer, ControlMessage

from .clock import RedisClock
from .engine import Engine
from .events import Events

__all__ = ["Answers", "QueryMarks", "QueryServer"]

CONCURRENCY = 16  # one-shot queries in their task at once
BUDGET = 50_000  # rows tested by one answer at most (about 25 ms of this box's CPU)
MAX_BYTES = 4 * 1024 * 1024  # largest answer sent; larger ones are scanned
WAIT_S = 0.1  # longest wait for the tail to apply the log up to the query's mark
STALE_S = 2.0  # a request older than this (Redis's clock) is dropped unanswered
MOST_DUE = 1000  # expired rows awaiting deletion in a partition that an answer hides


class QueryMarks(Protocol):
    async def query_mark(
        self, tenant: str, entity: str, most: int
    ) -> tuple[str, int, dict[str, int] | None]:
        """The log's end, Redis time in ms, and the collection's expired-but-stored rows
        (id -> version; None: more than `most` are due)."""
        ...


class Answers(Protocol):
    async def answer(self, gateway: str, answer: Answer) -> bool:
        """Append the answer to the gateway's delta stream (False: the stream is gone)."""
        ...


class QueryServer:
    def __init__(
        self,
        *,
        engine: Engine,
        marks: QueryMarks,
        answers: Answers,
        signer: CursorSigner,
        limits: QueryLimits,
        fence: Callable[[int, int], bool],
        clock: RedisClock,
        group: asyncio.TaskGroup,
        events: Events,
        concurrency: int = CONCURRENCY,
        budget: int = BUDGET,
    ) -> None:
        self._engine = engine
        self._marks = marks
        self._answers = answers
        self._signer = signer
        self._limits = limits
        self._fence = fence
        self._clock = clock
        self._group = group
        self._events = events
        self._concurrency = concurrency
        self._budget = budget
        self._running = 0
        self.counts: dict[str, int] = {"answered": 0}  # answers and misses, by kind

    async def take(self, msg: ControlMessage) -> None:
        """Handle one `query` control message: start its task, or answer `busy`."""
        age_ms = self._clock.now_ms() - int(msg.entry_id.split("-")[0])
        if age_ms > STALE_S * 1000:
            self._count("stale")
            return
        if self._running >= self._concurrency:
            await self._reply(msg, None, "busy")
            return
        self._running += 1
        self._group.create_task(self._serve(msg))

    async def _serve(self, msg: ControlMessage) -> None:
        try:
            page, miss = await self._answer(msg)
            await self._reply(msg, page, miss)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._events.error("query_failed", p=msg.p, req=msg.rid, error=repr(e))
            try:
                await self._reply(msg, None, "error")
            except Exception as again:  # the gateway's timeout answers by a scan
                self._events.warning("query_reply_failed", req=msg.rid, error=repr(again))
        finally:
            self._running -= 1

    async def _reply(self, msg: ControlMessage, page: bytes | None, miss: str) -> None:
        self._count("answered" if page is not None else miss)
        await self._answers.answer(msg.gw, Answer(msg.rid, page, miss))

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _parse(self, body: bytes | None) -> tuple[str, Query] | None:
        try:
            obj = orjson.loads(body or b"")
            tenant = obj["tenant"]
            query = parse_query(obj["query"], signer=self._signer, limits=self._limits)
        except (LiveQueryError, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if not isinstance(tenant, str):
            return None
        return tenant, query

    async def _answer(self, msg: ControlMessage) -> tuple[bytes | None, str]:
        """The page's bytes, or None and the miss's reason."""
        parsed = self._parse(msg.body)
        if parsed is None:
            return None, "invalid"
        tenant, query = parsed
        engine = self._engine
        part = engine.serving_now(msg.p)
        if part is None or not self._fence(msg.p, part.epoch):
            return None, "not_owner"
        if engine.collection(tenant, query.entity) is None:
            return None, "not_loaded"
        end, _, hidden = await self._marks.query_mark(tenant, query.entity, MOST_DUE)
        if hidden is None:
            return None, "expiring"
        if not await engine.caught_up(part, end, WAIT_S):
            return None, "behind"
        # From here to `page_of`, no await: the collection stays at one applied position.
        coll = engine.collection(tenant, query.entity)
        if coll is None or engine.serving_now(msg.p) is not part:
            return None, "not_loaded"
        if coll.sort_index(query.sort_spec) is None and len(coll.rows) > self._budget:
            return None, "no_index"
        ranked = first_rows(coll, query, hidden, self._budget)
        if ranked is None:
            return None, "costly"
        page = page_of(query, self._signer, ranked).encode()
        if len(page) > MAX_BYTES:
            return None, "too_large"
        return page, ""
