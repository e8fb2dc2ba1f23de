"""Record what a real gateway sends, as the JavaScript client's test fixtures.

Run against a running cluster (`lq dev`), from the repository root:

    .venv/bin/python clients/js/test/capture.py --url http://127.0.0.1:8080 --token "$TOKEN"

Each scenario writes rows over the HTTP data API while one subscription listens on a
WebSocket (authenticated by its first message, as the browser client does), waits until
the deltas stop, and records a checkpoint: the `seq` reached and the rows a fresh HTTP
query answers then. The test (`delta.test.js`) replays the frames through the client's
applier and compares its list with each checkpoint, so the expected lists come from the
server's query path, not from the applier under test. One scenario also records the
raw Server-Sent Events of a stream. Entities get a fresh suffix, so reruns never see
old rows. Writes `clients/js/test/streams/<scenario>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

OUT = Path(__file__).parent / "streams"
QUIET = 0.4  # seconds without a frame after which a write's deltas are taken as all in


class Recorder:
    """One subscription on one WebSocket, its frames, and the checkpoints."""

    def __init__(self, http: httpx.AsyncClient, ws: ClientConnection, query: dict[str, Any]):
        self.http = http
        self.ws = ws
        self.query = query
        self.frames: list[Any] = []
        self.seq = 0
        self.checkpoints: list[dict[str, Any]] = []

    async def drain(self) -> None:
        """Read frames until none came for `QUIET` seconds."""
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), QUIET)
            except TimeoutError:
                return
            frame = json.loads(raw)
            self.frames.append(frame)
            for m in frame if isinstance(frame, list) else [frame]:
                if m.get("type") == "delta":
                    self.seq = m["seq"]

    async def checkpoint(self, note: str) -> None:
        await self.drain()
        q = self.query
        changes = q.get("mode") == "changes"  # the oracle is every matching row
        body: dict[str, Any] = {"where": q.get("where", {}), "sort": q.get("sort", []),
                                "limit": 1000 if changes else q["limit"]}
        if q.get("after") is not None:
            body["after"] = q["after"]
        r = await self.http.post(f"/v1/entities/{q['entity']}/query", json=body)
        r.raise_for_status()
        rows = [{"id": x["id"], "version": x["version"], "row": x["row"]}
                for x in r.json()["rows"]]
        self.checkpoints.append({"note": note, "seq": self.seq, "rows": rows})

    async def send(self, message: dict[str, Any]) -> None:
        self.frames.append({"sent": message})
        await self.ws.send(json.dumps(message))


Steps = Callable[[Recorder, Callable[..., Awaitable[None]]], Awaitable[None]]


async def window_steps(rec: Recorder, put: Callable[..., Awaitable[None]]) -> None:
    e = rec.query["entity"]
    await put("PUT", e, "e", {"status": "open", "priority": 6, "title": "eve"})
    await rec.checkpoint("enter at the top of a full window: b is evicted first")
    await put("PATCH", e, "c", {"priority": 7})
    await rec.checkpoint("c moves to the top")
    await put("PATCH", e, "a", {"title": "alpha, renamed"})
    await rec.checkpoint("a is updated in place")
    await put("PATCH", e, "e", {"status": "closed"})
    await rec.checkpoint("e leaves; b is promoted into the last place")
    await put("DELETE", e, "c", None)
    await rec.checkpoint("c is deleted; d is promoted")
    await put("PUT", e, "f", {"status": "open", "priority": 5, "title": "fay"})
    await rec.checkpoint("f ties with a on priority and follows it by id")
    await put("PATCH", e, "b", {"priority": 9})
    await rec.checkpoint("b, outside the window, moves in at the top (an enter)")
    await put("PATCH", e, "a", {"priority": 1})
    await rec.checkpoint("a drops out of the window (a leave, and f or d promoted)")


async def changes_steps(rec: Recorder, put: Callable[..., Awaitable[None]]) -> None:
    e = rec.query["entity"]
    await put("PUT", e, "e", {"status": "open", "priority": 6})
    await rec.checkpoint("e matches")
    await put("PATCH", e, "a", {"priority": 8})
    await rec.checkpoint("a is updated")
    await put("PATCH", e, "b", {"status": "closed"})
    await rec.checkpoint("b stops matching")
    await put("DELETE", e, "c", None)
    await rec.checkpoint("c is deleted (an unmatch)")
    await put("PATCH", e, "b", {"status": "open"})
    await rec.checkpoint("b matches again")


async def truncated_steps(rec: Recorder, put: Callable[..., Awaitable[None]]) -> None:
    e = rec.query["entity"]
    await put("PATCH", e, "d", {"priority": 1})
    await rec.checkpoint("d, matching but not in the truncated snapshot, is updated")
    await put("PATCH", e, "a", {"status": "closed"})
    await rec.checkpoint("a stops matching")


async def reanchor_steps(rec: Recorder, put: Callable[..., Awaitable[None]]) -> None:
    e = rec.query["entity"]
    second = next(m for m in _messages(rec.frames) if m.get("op") == "enter" and m["to"] == 1)
    rec.query = {**rec.query, "after": second["cursor"], "limit": 3}
    await rec.send({"type": "reanchor", "sub": "c1", "after": second["cursor"], "limit": 3})
    await rec.checkpoint("reanchored after the second row, limit 3")
    await put("PATCH", e, "d", {"priority": 0})
    await rec.checkpoint("d moves within the new window")
    rec.query = {**rec.query, "after": None, "limit": 2}
    await rec.send({"type": "reanchor", "sub": "c1", "after": None, "limit": 2})
    await rec.checkpoint("back to the top, limit 2")


def _messages(frames: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for frame in frames:
        if isinstance(frame, dict) and "sent" in frame:
            continue
        out.extend(frame if isinstance(frame, list) else [frame])
    return out


SEED = {
    "a": {"status": "open", "priority": 5, "title": "alpha"},
    "b": {"status": "open", "priority": 3, "title": "bob"},
    "c": {"status": "open", "priority": 4, "title": "cat"},
    "d": {"status": "open", "priority": 2, "title": "dan"},
    "z": {"status": "closed", "priority": 9, "title": "zed"},
}

SCENARIOS: dict[str, tuple[str, dict[str, Any], Steps]] = {
    "window": ("A window of 3 (enters, leaves, moves, updates, evictions, promotions)",
               {"where": {"status": "open"}, "sort": ["-priority"], "limit": 3},
               window_steps),
    "changes": ("Changes mode: match, update, unmatch, delete",
                {"where": {"status": "open"}, "sort": ["id"], "mode": "changes"},
                changes_steps),
    "truncated": ("Changes mode, a snapshot truncated at limit 2 of 4 matching rows",
                  {"where": {"status": "open"}, "sort": ["id"], "mode": "changes", "limit": 2},
                  truncated_steps),
    "reanchor": ("Reanchor: old window, reset, new window, seq going on",
                 {"where": {"status": "open"}, "sort": ["-priority"], "limit": 2},
                 reanchor_steps),
}


async def scenario(url: str, token: str, name: str) -> None:
    description, query, steps = SCENARIOS[name]
    entity = f"js_{name}_{secrets.token_hex(3)}"
    query = {"entity": entity, **query}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:

        async def put(method: str, e: str, rid: str, row: dict[str, Any] | None) -> None:
            r = await http.request(method, f"/v1/entities/{e}/rows/{rid}", json=row)
            r.raise_for_status()

        for rid, row in SEED.items():
            await put("PUT", entity, rid, row)
        ws_url = url.replace("http://", "ws://", 1) + "/v1/ws"
        async with connect(ws_url) as ws:
            rec = Recorder(http, ws, query)
            await ws.send(json.dumps({"type": "auth", "token": token}))  # not recorded
            await rec.send({"type": "subscribe", "sub": "c1", "query": query})
            await rec.checkpoint("the snapshot")
            await steps(rec, put)
    fixture = {"description": description, "recorded": "from a real lq dev gateway by "
               "clients/js/test/capture.py", "sub": "c1", "query": query,
               "frames": rec.frames, "checkpoints": rec.checkpoints}
    (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")


async def sse(url: str, token: str) -> None:
    """The raw events of one SSE stream: a snapshot, then a few changes."""
    entity = f"js_sse_{secrets.token_hex(3)}"
    query = {"entity": entity, "where": {"status": "open"}, "sort": ["-priority"], "limit": 3}
    headers = {"Authorization": f"Bearer {token}"}
    events: list[dict[str, str]] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        for rid, row in SEED.items():
            (await http.put(f"/v1/entities/{entity}/rows/{rid}", json=row)).raise_for_status()

        async def read() -> None:
            async with http.stream("GET", "/v1/sse", params={"q": json.dumps(query)}) as r:
                r.raise_for_status()
                event: dict[str, str] = {}
                async for line in r.aiter_lines():
                    if line == "":
                        if "data" in event:
                            events.append(event)
                        event = {}
                    elif not line.startswith(":"):
                        field, _, value = line.partition(":")
                        event[field] = value.removeprefix(" ")

        reader = asyncio.create_task(read())
        await asyncio.sleep(1.0)
        await http.put(f"/v1/entities/{entity}/rows/e", json={"status": "open", "priority": 6})
        await http.patch(f"/v1/entities/{entity}/rows/c", json={"priority": 7})
        await http.patch(f"/v1/entities/{entity}/rows/a", json={"title": "renamed"})
        await asyncio.sleep(1.0)
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
        rows = (await http.post(f"/v1/entities/{entity}/query",
                                json={"where": query["where"], "sort": query["sort"],
                                      "limit": 3})).json()["rows"]
    fixture = {"description": "The events of one SSE stream (event, id, data as sent)",
               "recorded": "from a real lq dev gateway by clients/js/test/capture.py",
               "query": query, "events": events,
               "rows": [{"id": x["id"], "version": x["version"], "row": x["row"]}
                        for x in rows]}
    (OUT / "sse.json").write_text(json.dumps(fixture, indent=1) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    for name in SCENARIOS:
        await scenario(args.url, args.token, name)
    await sse(args.url, args.token)


if __name__ == "__main__":
    asyncio.run(main())
