"""State-diff resume end to end (issue 15): real shard and gateway processes, real Redis.

A client that held a window on a gateway killed with SIGKILL resubscribes on another
one declaring its rows: no `reset`, its list equals a fresh query, the digest (checked
here with hashlib over PROTOCOL.md section 3's text, not the client's code) matches,
and the messages sent grow with the difference, not with the window. The measure (a
1,000-row window with 0, 3 and 100 rows changed while the client was away, against a
full snapshot on the same run) is printed, `pytest -s` shows it.
"""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from lq_client import LiveClient
from lq_client.view import ViewState

from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, fresh, new_tenant, rows_of, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer
from tests.resume_helpers import BIG, change, load, sha, until_synced

pytestmark = pytest.mark.timeout(120)


async def test_resume_after_a_gateway_kill_costs_the_difference(
        redis_standalone: RedisServer) -> None:
    toks = {n: token(new_tenant()) for n in (0, 3, 100)}
    table: list[str] = []
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway()
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(1), timeout=30) as http:
            held: dict[int, ViewState] = {}
            socks = []
            for n, tok in toks.items():
                await load(http, tok, 1200)
                ws = await Ws.connect(c.ws_url(0), tok, max_size=None)
                held[n] = await ws.subscribe("w", BIG, timeout=30)
                assert len(held[n].rows) == 1000
                socks.append(ws)
            c.gateways[0].kill()
            for n, tok in toks.items():
                await change(http, tok, n)
            for n, tok in toks.items():
                # a full snapshot on the same run, for comparison
                async with websockets.connect(c.ws_url(1), additional_headers=auth(tok),
                                              max_size=None) as raw:
                    await raw.send(json.dumps({"type": "subscribe", "sub": "f", "query": BIG}))
                    full, full_bytes = await until_synced(raw, "f", ViewState(True, 1000))
                    state = held[n]
                    state.restart()
                    declared = [[r.id, r.version] for r in state.rows]
                    await raw.send(json.dumps({"type": "subscribe", "sub": "w", "query": BIG,
                                               "resume": {"rows": declared}}))
                    got, size = await until_synced(raw, "w", state)
                want = await fresh(http, tok, BIG)
                assert [(r.id, r.version) for r in state.rows] == [(i, v) for i, v, _ in want]
                assert got[0]["op"] == "resume" and got[0]["seq"] == 1
                assert got[-1]["digest"] == sha([(i, v) for i, v, _ in want])
                assert len(full) == 1002
                ops = len(got) - 2
                if n == 3:
                    assert ops <= 3, [m["op"] for m in got]
                elif n == 0:
                    assert ops == 0
                else:
                    assert ops <= 2 * n
                table.append(f"| {n} | {len(got)} | {size} | {len(full)} | {full_bytes} |")
            metrics = (await http.get("/metrics")).text
            assert "lq_live_resumes_total 3.0" in metrics
            assert "lq_live_resume_misses_total 0.0" in metrics
            for sock in socks:
                await sock.close()
    print("\n| rows changed | resume messages | resume bytes | snapshot messages |"
          " snapshot bytes |\n|---|---|---|---|---|\n" + "\n".join(table))


async def test_a_declaration_that_cannot_be_right_gets_a_reset(
        redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    q = {"entity": "tasks", "sort": ["-p"], "limit": 3}
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(), timeout=30) as http:
            await load(http, tok, 5)
            ws = await Ws.connect(c.ws_url(), tok)
            (a, va, _), (b, vb, _) = (await fresh(http, tok, q))[:2]
            for sub, rows in (("over", [["a", 1]] * 4), ("twice", [["a", 1], ["a", 2]]),
                              ("bad", [["a", "1"]]), ("newer", [["r0004", 2**62]]),
                              ("order", [[b, vb], [a, va]])):
                ws.views[sub] = ViewState(True, 3)
                await ws.send({"type": "subscribe", "sub": sub, "query": q,
                               "resume": {"rows": rows}})
                await ws.synced(sub)
                assert ws.views[sub].reason == "resume_miss", sub
                assert rows_of(ws.views[sub].current()) == await fresh(http, tok, q)
            await ws.send({"type": "subscribe", "sub": "x", "query": q, "resume": [["a", 1]]})
            assert (await ws.error("x"))["code"] == "invalid_message"
            await ws.close()


async def test_the_python_client_resumes_on_another_gateway_without_a_reset(
        redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    q = {"entity": "tasks", "sort": ["-p"], "limit": 50}
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway()
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(1), timeout=30) as http:
            await load(http, tok, 80)
            async with LiveClient([c.url(0), c.url(1)], tok, backoff=(0.05, 0.5)) as lq:
                view = await lq.subscribe(q)
                assert view.reason == "subscribe"
                c.gateways[0].kill()
                for rid, row in (("r0079", {"done": True}), ("r0060", {"p": 1}),
                                 ("r0075", {"p": 5000})):
                    r = await http.patch(f"/v1/entities/tasks/rows/{rid}", json=row,
                                         headers=auth(tok))
                    assert r.status_code == 200

                async def converged() -> bool:
                    return view.synced and rows_of(view.rows) == await fresh(http, tok, q)

                await wait_for(converged, timeout=20)
                assert lq.connects == 2
                assert view.resumes == 1 and view.resume_misses == 0 and view.restarts == 0
                assert view.reason == "subscribe"  # no second reset
                assert view.state.digest() == sha([(r.id, r.version) for r in view.rows])
                seen = []
                while not view.changes.empty():
                    item = view.changes.get_nowait()
                    if isinstance(item, dict):
                        seen.append(item["op"])
                assert seen.count("reset") == 1 and "resume" in seen
                metrics = (await http.get("/metrics")).text
                assert "lq_live_resumes_total 1.0" in metrics, metrics[-2000:]
