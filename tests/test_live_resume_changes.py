"""Log-position resume of changes-mode subscriptions end to end (issue 15; PROTOCOL.md
section 3, "Log-position resume"): real shard and gateway processes, real Redis.

A client that held a changes-mode set on a gateway killed with SIGKILL subscribes on
another one naming the `pos` it last applied: `resume`, one message per row changed
meanwhile, `synced`, and its set (applied by the strict client applier) equals a fresh
query. Positions that cannot be continued (malformed, unknown, trimmed away, rewritten
under the same id as after a Redis that lost the entry, too far behind, more rows than
`limit`) get `reset` with `resume_miss` and a full snapshot. The measure (1,000 matching
rows, 3 changed, against a full snapshot on the same run) is printed: `pytest -s`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest
import websockets
from lq_client.view import ViewState

from cluster.keys import Keys
from cluster.partition import partition_of
from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, fresh, new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer
from tests.resume_helpers import load, until_synced

pytestmark = pytest.mark.timeout(120)

ALL: dict[str, Any] = {"entity": "tasks", "mode": "changes", "limit": 1000}


def as_set(state: ViewState) -> dict[str, int]:
    return {r.id: r.version for r in state.current()}


async def oracle(http: httpx.AsyncClient, tok: str, q: dict[str, Any]) -> dict[str, int]:
    return {i: v for i, v, _ in await fresh(http, tok, q)}


async def test_changes_resume_after_a_gateway_kill_sends_only_the_changed_rows(
        redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway()
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(1), timeout=30) as http:
            await load(http, tok, 1000)
            ws = await Ws.connect(c.ws_url(0), tok, max_size=None)
            state = await ws.subscribe("c", ALL, timeout=30)
            assert len(state.by_id) == 1000 and state.pos is not None
            await http.put("/v1/entities/tasks/rows/r0001", json={"p": -1}, headers=auth(tok))
            await ws.settle(lambda: state.by_id["r0001"].values == {"p": -1})
            seen = state.pos
            c.gateways[0].kill()
            for rid, body in (("r0002", {"p": 1}), ("r0003", {"p": 2})):
                r = await http.put(f"/v1/entities/tasks/rows/{rid}", json=body,
                                   headers=auth(tok))
                assert r.status_code == 200
            assert (await http.delete("/v1/entities/tasks/rows/r0004",
                                      headers=auth(tok))).status_code == 200
            async with websockets.connect(c.ws_url(1), additional_headers=auth(tok),
                                          max_size=None) as raw:
                await raw.send(json.dumps({"type": "subscribe", "sub": "f", "query": ALL}))
                full, full_bytes = await until_synced(raw, "f", ViewState(False, 1000))
                state.restart()
                assert state.held_pos() == seen
                await raw.send(json.dumps({"type": "subscribe", "sub": "c", "query": ALL,
                                           "resume": {"pos": seen}}))
                got, size = await until_synced(raw, "c", state)
                assert got[0] == {"type": "delta", "sub": "c", "seq": 1, "op": "resume",
                                  "pos": seen}
                assert sorted((m["op"], m["id"]) for m in got[1:-1]) == [
                    ("match", "r0002"), ("match", "r0003"), ("unmatch", "r0004")]
                assert got[-1]["count"] == 999 and got[-1]["truncated"] is False
                assert as_set(state) == await oracle(http, tok, ALL)
                # the live stream goes on from there, each change with its pos
                await http.put("/v1/entities/tasks/rows/r0004", json={"p": 7},
                               headers=auth(tok))
                while "r0004" not in state.by_id:
                    data = json.loads(await raw.recv())
                    for m in data if isinstance(data, list) else [data]:
                        if m.get("sub") == "c":
                            state.apply(m)
                            assert m["op"] == "match" and isinstance(m["pos"], str)
                assert as_set(state) == await oracle(http, tok, ALL)
            metrics = (await http.get("/metrics")).text
            assert "lq_live_resumes_total 1.0" in metrics
            await ws.close()
    print("\n| changes mode, 1,000 rows, 3 changed | messages | bytes |\n|---|---|---|\n"
          f"| resume | {len(got)} | {size} |\n| full snapshot | {len(full)} | {full_bytes} |")


def resumable(q: dict[str, Any], base: ViewState, at: str) -> ViewState:
    """A list as a client holds it after a reconnect: `base`'s set, named by `at`."""
    state = ViewState(q.get("mode", "window") == "window", q["limit"])
    state.by_id = dict(base.by_id)
    state.resumable, state.pos = True, at
    return state


async def test_positions_that_cannot_be_continued_get_resume_miss(
        redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    small = {"entity": "tasks", "mode": "changes", "limit": 3}
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0", LQ_RESUME_MAX_ENTRIES="20")
        c.start_gateway()
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(), timeout=30) as http:
            await load(http, tok, 5)
            ws = await Ws.connect(c.ws_url(), tok)
            state = await ws.subscribe("a", ALL)
            pos = state.pos
            assert pos is not None

            async def resume(sub: str, q: dict[str, Any], at: str) -> ViewState:
                ws.views[sub] = resumable(q, state, at)
                await ws.send({"type": "subscribe", "sub": sub, "query": q,
                               "resume": {"pos": at}})
                await ws.synced(sub)
                got = ws.views[sub]
                assert as_set(got) == await oracle(http, tok, q), sub
                return got

            assert (await resume("ok", ALL, pos)).reason == ""  # resumed: no reset
            for sub, q, at in (("bad", ALL, "not a pos"), ("unknown", ALL, "1-0.5"),
                               ("window", {"entity": "tasks", "limit": 3}, pos),
                               ("truncated", small, pos)):
                assert (await resume(sub, q, at)).reason == "resume_miss", sub
            # too far behind: more than resume_max_entries log entries after it
            await load(http, tok, 25)
            await ws.settle(lambda: len(state.by_id) == 25)
            assert (await resume("far", ALL, pos)).reason == "resume_miss"
            assert state.pos is not None
            assert (await resume("recent", ALL, state.pos)).reason == ""
            # the entry rewritten under the same id with another write (what a Redis that
            # lost it and logged another write at the same id would hold): refused
            r: Any = redis_standalone.client()
            key = Keys(c.prefix).events(partition_of(tenant_of(tok), "tasks"))
            sid, fields = r.xrevrange(key, count=1)[0]
            assert state.pos == f"{sid}.{fields['v']}"
            r.delete(key)
            r.xadd(key, {**fields, "v": str(int(fields["v"]) + 1)}, id=sid)
            assert (await resume("lost", ALL, state.pos)).reason == "resume_miss"
            # trimmed away
            r.xtrim(key, minid="99999999999999")
            assert (await resume("trimmed", ALL, state.pos)).reason == "resume_miss"
            await ws.send({"type": "subscribe", "sub": "x", "query": ALL,
                           "resume": {"pos": 5}})
            assert (await ws.error("x"))["code"] == "invalid_message"
            await ws.close()


def tenant_of(tok: str) -> str:
    return str(jwt.decode(tok, options={"verify_signature": False})["tenant"])
