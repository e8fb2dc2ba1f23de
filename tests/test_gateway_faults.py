"""Redis faults: the circuit breaker as a state machine, and a real outage end to end.

The outage uses a Redis of its own (AOF on), stopped and started by pid, so the shared
session server is never disturbed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lq_client import LiveError, Unavailable
from lq_client.http import HttpApi

from cluster.errors import StorageUnavailable
from cluster.keys import Keys
from cluster.partition import partition_of
from gateway import BreakerState, CircuitBreaker
from lq.chaos.proxy import ProxyProcess
from tests.gateway_helpers import auth, config_for, running, token
from tests.redis_servers import LocalRedisServer, ping, start_standalone

H = auth(token("acme"))
ROW = "/v1/entities/tasks/rows/{}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _state(b: CircuitBreaker) -> BreakerState:
    return b.state  # read through a call, so the type checker does not pin it


def test_breaker_opens_after_three_failures_then_lets_one_trial_through() -> None:
    clock = Clock()
    seen: list[BreakerState] = []
    b = CircuitBreaker(3, 2.0, clock=clock, on_change=seen.append)
    for _ in range(2):
        b.failed(b.admit())
    assert _state(b) is BreakerState.CLOSED
    b.succeeded(b.admit())  # a success resets the count
    for _ in range(3):
        b.failed(b.admit())
    assert _state(b) is BreakerState.OPEN
    with pytest.raises(StorageUnavailable, match="circuit breaker open"):
        b.admit()
    clock.now += 2.01
    trial = b.admit()
    assert trial and _state(b) is BreakerState.HALF_OPEN
    with pytest.raises(StorageUnavailable):
        b.admit()  # only one trial at a time
    b.failed(trial)
    assert _state(b) is BreakerState.OPEN  # a failed trial opens again, for a new cooldown
    clock.now += 1.0
    with pytest.raises(StorageUnavailable):
        b.admit()
    clock.now += 1.1
    trial = b.admit()
    b.abandoned(trial)  # cancelled: the slot is free again
    trial = b.admit()
    b.succeeded(trial)
    assert _state(b) is BreakerState.CLOSED and not b.admit()
    assert seen == [
        BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN,
        BreakerState.HALF_OPEN, BreakerState.CLOSED,
    ]


@pytest.fixture
def own_redis() -> Iterator[LocalRedisServer]:
    server = start_standalone(appendonly=True, prefer_docker=False)
    assert isinstance(server, LocalRedisServer)  # stopped and started by pid below
    try:
        yield server
    finally:
        server.stop()


def _stop(server: LocalRedisServer) -> None:
    assert server.pid is not None
    os.kill(server.pid, signal.SIGTERM)  # our own child, by pid
    deadline = time.monotonic() + 10
    while ping(server.host, server.port, 0.1) and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.slow
def test_redis_stopped_writes_fail_fast_then_recover_without_restart(
    own_redis: LocalRedisServer,
) -> None:
    config = config_for(own_redis.url, breaker_cooldown=0.3, redis_timeout=0.5)
    with running(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as http:
        ok = [http.put(ROW.format(f"a{i}"), json={"i": i}, headers=H) for i in range(5)]
        assert all(r.status_code == 200 for r in ok)
        _stop(own_redis)
        for i in range(8):
            start = time.monotonic()
            r = http.put(ROW.format(f"down{i}"), json={"i": i}, headers=H)
            elapsed = time.monotonic() - start
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "unavailable"
            assert elapsed < 1.0, f"write {i} took {elapsed:.2f} s"
        batch = {"ops": [{"op": "put", "entity": "tasks", "id": "downb", "row": {}}]}
        assert http.post("/v1/batch", json=batch, headers=H).status_code == 503
        assert http.get(ROW.format("a1"), headers=H).status_code == 503
        assert http.get("/readyz").status_code == 503
        assert http.get("/healthz").status_code == 200
        metrics = http.get("/metrics").text
        assert "lq_redis_breaker_state 2.0" in metrics
        assert "lq_redis_errors_total" in metrics
        own_redis.restart()
        deadline = time.monotonic() + 10
        while True:
            r = http.put(ROW.format("after"), json={"back": True}, headers=H)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
        assert http.get("/readyz").json()["ready"] is True
        page = http.post("/v1/entities/tasks/query", json={"limit": 100}, headers=H).json()
        assert sorted(x["id"] for x in page["rows"]) == sorted(
            [f"a{i}" for i in range(5)] + ["after"]
        )
    # nothing half-written: the change log holds exactly the successful writes
    p = partition_of("acme", "tasks")
    with own_redis.client() as client:
        entries = client.xrange(Keys().events(p))
        assert sorted(e[1]["i"] for e in entries) == sorted(
            [f"a{i}" for i in range(5)] + ["after"]
        )
        assert client.zcard(Keys().ttl(p)) == 0


async def test_reads_are_retried_with_backoff_writes_never() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gateway.context import Context

    ctx = Context(config_for("redis://127.0.0.1:1/0", redis_retries=2))
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls % 3 != 0:
            raise RedisConnectionError("connection reset")
        return "ok"

    assert await ctx.call(flaky, read=True) == "ok"
    assert calls == 3 and _state(ctx.breaker) is BreakerState.CLOSED
    calls = 0
    with pytest.raises(StorageUnavailable):
        await ctx.call(flaky)  # a write is tried once
    assert calls == 1 and ctx.breaker.failures == 1


async def _client_put(url: str) -> LiveError | None:
    """The Python client's error for a PUT, or None when it succeeded."""
    async with HttpApi([url], H["Authorization"].removeprefix("Bearer "), 10, 3) as api:
        try:
            await api.put("tasks", "late2", {"i": 2})
        except LiveError as e:
            return e
    return None


@pytest.mark.slow
def test_a_write_whose_reply_is_lost_says_its_outcome_is_unknown(
    own_redis: LocalRedisServer, tmp_path: Path
) -> None:
    """PROTOCOL.md section 7: a 503 says `"outcome": "unknown"` when the request reached
    Redis and the reply did not come back (here: a proxy delays every byte past the
    gateway's Redis timeout), and then the write may well be applied; a 503 without it
    (Redis refused the connection) means nothing was written."""
    proxy = ProxyProcess(tmp_path / "proxy.log")
    try:
        port = proxy.add("redis", own_redis.port)
        config = config_for(f"redis://127.0.0.1:{port}/0", breaker_cooldown=0.3,
                            redis_timeout=0.5)
        with running(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as http:
            assert http.put(ROW.format("before"), json={"i": 0}, headers=H).status_code == 200
            proxy.set_mode("redis", "slow", delay_ms=1500)
            r = http.put(ROW.format("late"), json={"i": 1}, headers=H)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["outcome"] == "unknown", r.text
            client_error = asyncio.run(_client_put(gw.url))
            assert isinstance(client_error, Unavailable) and client_error.outcome == "unknown"
            proxy.set_mode("redis", "pass")
            deadline = time.monotonic() + 10
            while True:  # the delayed write reaches Redis and is applied
                got = http.get(ROW.format("late"), headers=H)
                if got.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert got.status_code == 200 and got.json()["row"] == {"i": 1}, got.text
            _stop(own_redis)
            answers = [http.put(ROW.format(f"down{i}"), json={"i": i}, headers=H)
                       for i in range(4)]
            assert all(a.status_code == 503 for a in answers)
            # once the pooled connections are gone, a refused connection sent nothing
            assert "outcome" not in answers[-1].json()["error"], answers[-1].text
    finally:
        proxy.close()
