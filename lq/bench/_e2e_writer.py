"""The writer of `lq bench e2e`: single-row HTTP PUTs at a fixed rate, in its own process.

Run as `python -c "from lq.bench._e2e_writer import main; main()" '<plan JSON>'`; prints
a `Result` as JSON on stdout when done. It runs apart from the bench's clients, so that
reading deliveries never delays a write (and the other way round).

Invariants:
- Write `n` (from `plan.first`, counting up) goes to collection `n % collections`, row
  `r<(n // collections) % slots>`, and carries `{"slot", "n", "t"}`: `t` is
  `time.monotonic()` taken just before the request's bytes are written to the socket.
  On Linux that clock (CLOCK_MONOTONIC) is one clock for every process of the machine,
  so a client in another process takes `its monotonic() - t` as the write's latency.
- The pace is open loop: write `k` is due at `start + k / rate`. Due writes wait in a
  queue of at most `rate / 10 + connections` entries for a free connection (one request
  in flight on each, keep-alive; connections alternate over the gateways); a write that
  finds the queue full is not sent and counted in `behind`, and nothing is sent after
  `duration`. So the writer never holds more than that bound, and a system that cannot
  keep up shows as `sent / duration` below the rate, not as an ever-growing backlog.
- Every write sent gets its answer awaited (up to `_ANSWER_TIMEOUT`); `ok` holds the `n`
  of each one answered 200, `errors` counts the others by status (0: no answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field

import orjson

__all__ = ["Plan", "Result", "main", "row_of", "where"]

_ANSWER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    ports: list[int]  # the gateways' HTTP ports
    token: str
    rate: float  # writes per second
    duration: float  # seconds of sending
    connections: int  # keep-alive connections, one request in flight on each
    collections: int  # entities e0 .. e<collections-1>
    slots: int  # rows per collection, r0 .. r<slots-1>
    first: int  # the first write's n


@dataclass(slots=True)
class Result:
    sent: int = 0
    behind: int = 0  # due but not sent: no connection free and the queue full
    elapsed: float = 0.0  # from the first due time to the last answer
    ok: list[int] = field(default_factory=list)  # n of each write answered 200
    ack_ms: list[float] = field(default_factory=list)  # HTTP round trip of each 200
    errors: dict[str, int] = field(default_factory=dict)  # status -> count


def where(n: int, collections: int, slots: int) -> tuple[int, int]:
    """(collection, slot) of write `n`."""
    return n % collections, (n // collections) % slots


def row_of(slot: int, n: int, t: float) -> dict[str, object]:
    """The row a write (or the seeding, with n = -1) puts."""
    return {"slot": slot, "n": n, "t": t, "title": "write -> client latency"}


def _request(plan: Plan, n: int) -> bytes:
    collection, slot = where(n, plan.collections, plan.slots)
    body = orjson.dumps(row_of(slot, n, time.monotonic()))
    return (
        f"PUT /v1/entities/e{collection}/rows/r{slot} HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {plan.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _connection(plan: Plan, port: int, due: asyncio.Queue[int | None],
                      result: Result) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (n := await due.get()) is not None:
            sent_at = time.monotonic()
            writer.write(_request(plan, n))
            result.sent += 1
            try:
                status = await asyncio.wait_for(_answer(reader), _ANSWER_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                result.errors["0"] = result.errors.get("0", 0) + 1
                return  # this connection is done for; the others go on
            if status == 200:
                result.ok.append(n)
                result.ack_ms.append((time.monotonic() - sent_at) * 1000)
            else:
                result.errors[str(status)] = result.errors.get(str(status), 0) + 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _pace(plan: Plan, due: asyncio.Queue[int | None], result: Result,
                start: float) -> None:
    """Put each write in `due` at its time; count the ones that find it full."""
    k = 0
    while (now := time.monotonic()) < start + plan.duration:
        while k < (now - start) * plan.rate:
            try:
                due.put_nowait(plan.first + k)
            except asyncio.QueueFull:
                result.behind += 1
            k += 1
        await asyncio.sleep(min(0.001, 1 / plan.rate))
    while not due.empty():  # not sent by the end: behind, not late
        due.get_nowait()
        result.behind += 1


async def write(plan: Plan) -> Result:
    result = Result()
    due: asyncio.Queue[int | None] = asyncio.Queue(int(plan.rate / 10) + plan.connections)
    workers = [
        asyncio.create_task(_connection(plan, plan.ports[i % len(plan.ports)], due, result))
        for i in range(plan.connections)
    ]
    try:
        await asyncio.sleep(0.2)  # the connections are open before the first write is due
        start = time.monotonic()
        await _pace(plan, due, result, start)
        for _ in workers:  # `due` is empty now and holds at least one entry per worker
            due.put_nowait(None)
        done, _ = await asyncio.wait(workers, timeout=_ANSWER_TIMEOUT + 5)
        for task in done:
            task.result()
        result.elapsed = time.monotonic() - start
        return result
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def main() -> None:
    plan = Plan(**orjson.loads(sys.argv[1]))
    sys.stdout.buffer.write(orjson.dumps(asdict(asyncio.run(write(plan)))))
