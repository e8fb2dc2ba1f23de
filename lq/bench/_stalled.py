"""`lq bench gateway`'s slow-reader case: the fan-out to `n` reading subscribers with one
stalled WebSocket reader on the same gateway, against none, in the same run.

Setup: `n` subscribers of a small window (`iso`), each write to it one ~100-byte delta,
and one more connection subscribed to a firehose entity of 4 KiB rows, written all along
at a steady rate (so the same bytes are produced in both cases). Case "none": the
firehose subscriber reads. Case "one stalled reader": it stops reading (its transport's
reading paused, a 4 KiB SO_RCVBUF), a burst fills its stack and its outbox until it
overflows (`lq_live_behind_connections` >= 1), and the firehose keeps being written.
In each case `probes` single writes to `iso` are timed from the start of their PUT to
each reader's receipt; p50 / p99 are over every (probe, reader) sample. Then the stalled
reader reads again and must get a `reset` with reason `overflow`, and case "none" is
measured once more (its samples pooled with the first, so drift on a shared machine
weighs on both sides). The gateway's gauges
during the stall say what it held for the stalled connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx

from lq.bench._table import Row, quantile
from lq.bench._wait import until
from lq.bench._wsload import WsConn, open_many, open_one

__all__ = ["stalled_reader"]

_MARK = b'"op":"update"'
_PAD = "x" * 16384
_BURST = 32  # rows per batch of the burst (a batch body stays under 1 MiB)
_FIREHOSE_S = 0.02  # a 4 KiB row every 20 ms: about 200 KB/s to the firehose subscriber
_SMALL = "x" * 4096


class _Firehose(WsConn):
    """The firehose subscriber: counts overflow resets too."""

    def __init__(self) -> None:
        super().__init__(_MARK)
        self.overflows = 0
        self.recent = b""

    def received(self, data: bytes) -> None:
        chunk = self.recent + data
        self.overflows += chunk.count(b'"reason":"overflow"')
        self.recent = chunk[-24:]
        super().received(data)


async def _gauges(http: httpx.AsyncClient) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("lq_live_") and " " in line and "{" not in line:
            name, value = line.split()
            out[name.removeprefix("lq_live_").removesuffix("_total")] = float(value)
    return out


def _subscribe(conn: WsConn, entity: str) -> None:
    query = {"entity": entity, "sort": ["-priority"], "limit": 10}
    conn.send(json.dumps({"type": "subscribe", "sub": "s", "query": query}).encode())


async def _probe(http: httpx.AsyncClient, readers: list[WsConn], probes: int,
                 tag: str) -> list[float]:
    """`probes` writes to `iso`, each timed to every reader: the latencies in ms."""
    lat: list[float] = []
    for i in range(probes + 1):  # the first warms up
        counts = [c.count for c in readers]
        start = time.perf_counter()
        r = await http.put("/v1/entities/iso/rows/r9",
                           json={"priority": 9, "probe": f"{tag}{i}"})
        r.raise_for_status()
        await until(lambda seen=counts: all(  # type: ignore[misc]
            c.count > k for c, k in zip(readers, seen, strict=True)), 30, "the fan-out")
        if i:
            lat += [(c.changed_at - start) * 1000 for c in readers]
        await asyncio.sleep(0.05)
    return lat


async def stalled_reader(http: httpx.AsyncClient, port: int, auth: dict[str, str],
                         n: int, probes: int) -> list[Row]:
    """The table rows of the case (see the module docstring)."""
    ops = [{"op": "put", "entity": "iso", "id": f"r{i}", "row": {"priority": i}}
           for i in range(10)]
    (await http.post("/v1/batch", json={"ops": ops})).raise_for_status()
    readers = await open_many(n, "127.0.0.1", port, "/v1/ws", auth, _MARK)
    hose = await open_one(_Firehose, "127.0.0.1", port, "/v1/ws", auth, rcvbuf=4096)
    for conn in readers:
        _subscribe(conn, "iso")
    _subscribe(hose, "hose")
    seq = 0

    async def write_hose(k: int, pad: str = _PAD) -> None:
        nonlocal seq
        batch: list[dict[str, Any]] = []
        for _ in range(k):
            seq += 1
            batch.append({"op": "put", "entity": "hose", "id": f"h{seq % 10}",
                          "row": {"priority": seq, "pad": pad}})
        (await http.post("/v1/batch", json={"ops": batch})).raise_for_status()

    async def firehose() -> None:
        while True:
            await write_hose(1, _SMALL)
            await asyncio.sleep(_FIREHOSE_S)

    try:
        await until(lambda: hose.synced and all(c.synced for c in readers), 120, "syncs")
        hosing = asyncio.create_task(firehose())
        try:
            calm = await _probe(http, readers, probes, "n")
            assert hose.transport is not None
            hose.transport.pause_reading()  # stalled from now on
            for _ in range(100):  # a burst: its stack fills, then its outbox overflows
                await write_hose(_BURST)
                if (await _gauges(http)).get("behind_connections", 0) >= 1:
                    break
            stalled_gauges = await _gauges(http)
            stalled = await _probe(http, readers, probes, "s")
            late = await _gauges(http)
            hose.transport.resume_reading()
            await until(lambda: hose.overflows > 0, 60, "the stalled reader's overflow reset")
            calm += await _probe(http, readers, probes, "m")  # none again: drift shows
        finally:
            hosing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hosing
    finally:
        for conn in [*readers, hose]:
            conn.close()
    p50n, p99n = quantile(calm, 0.5), quantile(calm, 0.99)
    p50s, p99s = quantile(stalled, 0.5), quantile(stalled, 0.99)
    held = max(stalled_gauges.get("queued_bytes_max", 0), late.get("queued_bytes_max", 0))
    below = max(stalled_gauges.get("stack_bytes", 0), late.get("stack_bytes", 0))
    return [
        (f"fan-out to {n:,}, no stalled reader: p50 / p99", f"{p50n:.1f} / {p99n:.1f} ms",
         f"2 x {probes} writes, before and after; a reader of 200 KB/s"),
        (f"fan-out to {n:,}, one stalled reader: p50 / p99", f"{p50s:.1f} / {p99s:.1f} ms",
         f"{probes} writes; that reader stopped reading and overflowed"),
        ("stalled / none: p50 / p99", f"{p50s / p50n:.2f} / {p99s / p99n:.2f}",
         "same run; 1.00 = unchanged"),
        ("held for the stalled reader", f"{held / 1024:,.0f} KiB",
         f"sampled while stalled; below the outbox: {below / 1024:,.0f} KiB"),
        ("stalled reader reading again", f"{hose.overflows} overflow reset(s)",
         "then a fresh snapshot"),
    ]
