"""Helpers of the state-diff resume tests (issue 15): a 1,000-row window, its data, the
changes made while a client is away, and the digest computed independently.

`sha` restates PROTOCOL.md section 3's digest with hashlib, not the client's code, so a
test that compares it with the server's `synced` checks both against the text.
`change(n)` changes `n` rows of the window: every third moves (its sort value changes),
the others change in place, so a resume needs one op per changed row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
from lq_client.view import ViewState

from tests.gateway_helpers import auth

__all__ = ["BIG", "change", "load", "sha", "until_synced"]

BIG: dict[str, Any] = {"entity": "tasks", "sort": ["-p"], "limit": 1000}


def sha(pairs: list[tuple[str, int]]) -> str:
    """The window digest of (id, version) pairs, from the protocol's text."""
    text = "".join(f"{rid}\n{version}\n" for rid, version in pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


async def load(http: httpx.AsyncClient, tok: str, n: int) -> None:
    """`n` rows r0000.. with p = 10 * i (so `BIG` holds the top 1,000 of them)."""
    ops = [{"op": "put", "entity": "tasks", "id": f"r{i:04d}",
            "row": {"p": 10 * i, "title": f"task number {i}", "done": False}}
           for i in range(n)]
    for at in range(0, n, 500):
        r = await http.post("/v1/batch", json={"ops": ops[at:at + 500]}, headers=auth(tok))
        assert r.status_code == 200 and all(x["status"] == 200 for x in r.json()["results"])


async def change(http: httpx.AsyncClient, tok: str, n: int) -> None:
    """`n` rows of the window changed: every third moves (its sort value), the rest in place."""
    ops = [{"op": "patch", "entity": "tasks", "id": f"r{1199 - 7 * k:04d}",
            "row": {"p": 5 + 10 * (1199 - 7 * k - 13)} if k % 3 == 2 else {"done": True}}
           for k in range(n)]
    if ops:
        r = await http.post("/v1/batch", json={"ops": ops}, headers=auth(tok))
        assert r.status_code == 200 and all(x["status"] == 200 for x in r.json()["results"])


async def until_synced(ws: Any, sub: str, state: ViewState) -> tuple[list[dict[str, Any]], int]:
    """Read and apply until `synced`: the messages of `sub` and the bytes they took."""
    got: list[dict[str, Any]] = []
    size = 0
    while not (got and got[-1].get("op") == "synced"):
        raw = await asyncio.wait_for(ws.recv(), 15)
        data = json.loads(raw)
        mine = [m for m in (data if isinstance(data, list) else [data])
                if m.get("type") == "delta" and m["sub"] == sub]
        if mine:  # the frame's bytes as sent (only this subscription is moving)
            size += len(raw.encode() if isinstance(raw, str) else raw)
        for m in mine:
            got.append(m)
            state.apply(m)
    return got, size
