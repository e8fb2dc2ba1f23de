"""What a chaos run subscribes to: collections, queries and the clients holding them.

Invariants: everything is drawn from `random.Random(seed)` (a different stream from
the writer's and the fault plan's), so a seed names the same subscriptions; queries
mix window and changes mode, filters, sorts, limits (1 to 20, and changes mode above
and below the collection size, so `truncated` snapshots happen) and cursors, and the
first WebSocket subscriptions follow whole collections (so every row, and every write
Redis loses, is in some list); a
cursor is taken from a real query at the start, with the row it was made from as the
oracle's anchor (the position it names never moves, whatever that row does later).
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from lq.chaos.check import SubCheck
from lq.chaos.clients import Client, WsClient
from lq.chaos.settings import ChaosSettings
from lq.chaos.streams import PollClient, SseClient

__all__ = ["ENTITIES", "collections", "make_clients"]

ENTITIES = ("tasks", "notes")
_WHERES: list[dict[str, Any]] = [
    {}, {"status": "open"}, {"priority": {"$gte": 3}}, {"status": {"$in": ["open", "doing"]}},
    {"$or": [{"priority": 5}, {"owner.name": "ada"}]}, {"title": {"$prefix": "a"}},
    {"n": {"$lt": 500}, "status": {"$ne": "done"}}, {"owner.name": {"$exists": False}},
]
_SORTS: list[list[str]] = [[], ["-priority"], ["priority", "-n"], ["title"],
                           ["owner.name", "-n"], ["-n"]]


def collections(s: ChaosSettings) -> list[tuple[str, str]]:
    return [(f"t{i}", e) for i in range(s.tenants) for e in ENTITIES]


def _query(rng: random.Random, entity: str) -> dict[str, Any]:
    query: dict[str, Any] = {"entity": entity, "where": rng.choice(_WHERES),
                             "sort": rng.choice(_SORTS)}
    if rng.random() < 0.3:
        query["mode"] = "changes"
        if rng.random() < 0.3:
            query["limit"] = rng.choice([3, 8])  # below the collection: truncated
    else:
        query["mode"] = "window"
        query["limit"] = rng.choice([1, 3, 5, 10, 20])
    return query


async def _anchor(http: httpx.AsyncClient, url: str, token: str, query: dict[str, Any],
                  rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """Put an `after` cursor into a window query: the k-th row of the whole collection
    in its sort order; the row as it was then is the anchor."""
    k = rng.randrange(1, 6)
    r = await http.post(f"{url}/v1/entities/{query['entity']}/query",
                        json={"sort": query["sort"], "limit": k},
                        headers={"Authorization": f"Bearer {token}"})
    rows = r.json()["rows"] if r.status_code == 200 else []
    if len(rows) < k:
        return None
    query["after"] = rows[-1]["cursor"]
    return rows[-1]["id"], rows[-1]["row"]


async def make_clients(s: ChaosSettings, urls: list[str], tokens: dict[str, str],
                       http: httpx.AsyncClient) -> list[Client]:
    """`s.clients` clients: WebSocket, SSE and long polling in turn, tenants in turn,
    each on its own first gateway."""
    rng = random.Random(s.seed * 7919 + 17)
    out: list[Client] = []
    for i in range(s.clients):
        name = s.client_names()[i]
        transport = name.partition("-")[0]
        tenant = f"t{(i + i // 3) % s.tenants}"  # each transport over every tenant
        subs = []
        for j in range(s.subs if transport == "ws" else 1):
            query = _query(rng, rng.choice(ENTITIES))
            if transport == "ws" and j < len(ENTITIES):  # every row is in some list
                query = {"entity": ENTITIES[j], "mode": "changes"}
            anchor = None
            if query["mode"] == "window" and rng.random() < 0.2:
                anchor = await _anchor(http, urls[0], tokens[tenant], query, rng)
            subs.append(SubCheck(f"{name}.s{j}", tenant, query, anchor))
        args = (name, tenant, tokens[tenant], urls, subs, i % len(urls))
        if transport == "ws":
            out.append(WsClient(*args))
        elif transport == "sse":
            out.append(SseClient(*args, http=http))
        else:
            out.append(PollClient(*args, http=http))
    return out
