"""Record a state-diff resume (PROTOCOL.md section 3) from a real gateway, as a fixture.

Run against a running cluster (`lq dev`), from the repository root:

    .venv/bin/python clients/js/test/capture_resume.py --url http://127.0.0.1:8080 --token "$TOKEN"

One WebSocket subscribes to a window and records its snapshot, then closes. While no
one listens, rows of the window change (one in place, one moves, one leaves the
window, a new one enters it). A second WebSocket subscribes declaring the first list
(`resume`) and records the answer (`resume`, the ops, `synced` with its digest); a
third declares a version newer than the server's and records its `resume_miss`. Each
recording ends with a checkpoint: the rows a fresh HTTP query answers then, so the
expected list comes from the server's query path, not from the applier under test.
Writes `clients/js/test/streams/resume.json`.
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

OUT = Path(__file__).parent / "streams" / "resume.json"
SEED = {f"r{i}": {"status": "open", "priority": 10 * i, "title": f"task {i}"} for i in range(1, 8)}


async def until_synced(ws: Any, sub: str) -> list[Any]:
    frames: list[Any] = []
    while True:
        data = json.loads(await asyncio.wait_for(ws.recv(), 10))
        frames.append(data)
        mine = [m for m in (data if isinstance(data, list) else [data]) if m.get("sub") == sub]
        if any(m.get("op") == "synced" for m in mine):
            return frames


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    entity = f"js_resume_{secrets.token_hex(3)}"
    query = {"entity": entity, "where": {"status": "open"}, "sort": ["-priority"], "limit": 5}
    ws_url = args.url.replace("http://", "ws://", 1) + "/v1/ws"
    async with httpx.AsyncClient(base_url=args.url,
                                 headers={"Authorization": f"Bearer {args.token}"}) as http:

        async def put(method: str, rid: str, row: dict[str, Any] | None = None) -> None:
            r = await http.request(method, f"/v1/entities/{entity}/rows/{rid}", json=row)
            r.raise_for_status()

        async def fresh() -> list[dict[str, Any]]:
            r = await http.post(f"/v1/entities/{entity}/query",
                                json={"where": query["where"], "sort": query["sort"],
                                      "limit": query["limit"]})
            r.raise_for_status()
            return [{"id": x["id"], "version": x["version"], "row": x["row"]}
                    for x in r.json()["rows"]]

        async def session(message: dict[str, Any]) -> list[Any]:
            async with connect(ws_url) as ws:
                await ws.send(json.dumps({"type": "auth", "token": args.token}))
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(json.dumps(message))
                return [{"sent": message}, *await until_synced(ws, message["sub"])]

        for rid, row in SEED.items():
            await put("PUT", rid, row)
        first = await session({"type": "subscribe", "sub": "c1", "query": query})
        before = await fresh()
        declared = [[r["id"], r["version"]] for r in before]
        await put("PATCH", "r6", {"title": "task 6, renamed"})  # in place
        await put("PATCH", "r4", {"priority": 75})  # moves up
        await put("PATCH", "r5", {"status": "done"})  # leaves; r2 enters at the bottom
        await put("PUT", "r9", {"status": "open", "priority": 65, "title": "task 9"})  # enters
        await asyncio.sleep(0.3)
        resumed = await session({"type": "subscribe", "sub": "c2", "query": query,
                                 "resume": {"rows": declared}})
        after = await fresh()
        wrong = [list(p) for p in declared]
        wrong[0][1] += 10**9  # newer than the server's: cannot be right
        missed = await session({"type": "subscribe", "sub": "c3", "query": query,
                                "resume": {"rows": wrong}})
    fixture = {"description": "a window's snapshot; its state-diff resume after four changes "
               "(in place, a move, a leave, an enter); a declaration that cannot be right "
               "(resume_miss)", "recorded": "from a real lq dev gateway by "
               "clients/js/test/capture_resume.py", "query": query,
               "first": first, "before": before, "declared": declared,
               "resumed": resumed, "after": after, "missed": missed}
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
