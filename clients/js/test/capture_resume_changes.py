"""Record a changes-mode log-position resume (PROTOCOL.md section 3) from a real gateway.

Run against a running cluster (`lq dev`), from the repository root:

    .venv/bin/python clients/js/test/capture_resume_changes.py \
        --url http://127.0.0.1:8080 --token "$TOKEN"

One WebSocket subscribes to a changes-mode query, records its snapshot and one live
`update` (which carries a `pos`), then closes. While no one listens, rows change: one
in place, one twice, one stops matching, one is deleted, one starts matching, one that
never matched is written (the resume names it with an `unmatch` the client must take as
a no-op), and one leaves and comes back. A second WebSocket subscribes naming the last
`pos` the first applied (`resume: {pos}`) and records the answer (`resume`, one
`match`/`unmatch` per changed row, `synced` with its pos); a third names a pos the log
never held and records its `resume_miss`. Each recording ends with a checkpoint: the
rows a fresh HTTP query answers then, so the expected set comes from the server's query
path, not from the applier under test.
Writes `clients/js/test/streams/resume_changes.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

OUT = Path(__file__).parent / "streams" / "resume_changes.json"
SEED = {f"r{i}": {"status": "open", "n": i} for i in range(1, 9)}


def mine(data: Any, sub: str) -> list[dict[str, Any]]:
    return [m for m in (data if isinstance(data, list) else [data]) if m.get("sub") == sub]


async def record_until(ws: Any, sub: str, op: str) -> list[Any]:
    """The frames received until one holds `op` for `sub`."""
    frames: list[Any] = []
    while True:
        data = json.loads(await asyncio.wait_for(ws.recv(), 10))
        frames.append(data)
        if any(m.get("op") == op for m in mine(data, sub)):
            return frames


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    entity = f"js_resume_changes_{secrets.token_hex(3)}"
    query = {"entity": entity, "where": {"status": "open"}, "mode": "changes", "limit": 50}
    ws_url = args.url.replace("http://", "ws://", 1) + "/v1/ws"
    async with httpx.AsyncClient(base_url=args.url,
                                 headers={"Authorization": f"Bearer {args.token}"}) as http:

        async def put(method: str, rid: str, row: dict[str, Any] | None = None) -> None:
            r = await http.request(method, f"/v1/entities/{entity}/rows/{rid}", json=row)
            r.raise_for_status()

        async def fresh() -> list[dict[str, Any]]:
            r = await http.post(f"/v1/entities/{entity}/query",
                                json={"where": query["where"], "limit": 1000})
            r.raise_for_status()
            rows = [{"id": x["id"], "version": x["version"], "row": x["row"]}
                    for x in r.json()["rows"]]
            return sorted(rows, key=lambda x: x["id"])

        async def session(message: dict[str, Any], then: Any = None) -> list[Any]:
            async with connect(ws_url) as ws:
                await ws.send(json.dumps({"type": "auth", "token": args.token}))
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(json.dumps(message))
                frames = [{"sent": message}, *await record_until(ws, message["sub"], "synced")]
                if then is not None:  # a live change while the socket is open
                    await then()
                    frames += await record_until(ws, message["sub"], "update")
                return frames

        for rid, row in SEED.items():
            await put("PUT", rid, row)
        first = await session({"type": "subscribe", "sub": "c1", "query": query},
                              then=lambda: put("PATCH", "r1", {"n": 100}))
        before = await fresh()
        positions = [m["pos"] for f in first if "sent" not in f for m in mine(f, "c1")
                     if m.get("pos") is not None]
        pos = positions[-1]
        await put("PATCH", "r2", {"n": 200})  # in place
        await put("PATCH", "r3", {"n": 300})  # twice: one match
        await put("PATCH", "r3", {"n": 301})
        await put("PATCH", "r4", {"status": "done"})  # stops matching
        await put("DELETE", "r5")  # gone
        await put("PUT", "r9", {"status": "open", "n": 9})  # starts matching
        await put("PUT", "x1", {"status": "done", "n": 0})  # never matched
        await put("PATCH", "r6", {"status": "done"})  # leaves and comes back
        await put("PATCH", "r6", {"status": "open"})
        await asyncio.sleep(0.3)
        resumed = await session({"type": "subscribe", "sub": "c2", "query": query,
                                 "resume": {"pos": pos}})
        after = await fresh()
        missed = await session({"type": "subscribe", "sub": "c3", "query": query,
                                "resume": {"pos": "1-0.1"}})  # an entry the log never held
    fixture = {"description": "a changes-mode snapshot and one live update (with its pos); "
               "the log-position resume from that pos after seven rows changed (in place, "
               "twice, stopped matching, deleted, started matching, never matched, left "
               "and came back); a pos the log never held (resume_miss)",
               "recorded": "from a real lq dev gateway by "
               "clients/js/test/capture_resume_changes.py", "query": query,
               "first": first, "before": before, "pos": pos,
               "resumed": resumed, "after": after, "missed": missed}
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
