"""A shard's `/readyz` on real processes: ready when it holds the leases of every
partition it owns and its tail is within its bound; otherwise 503 saying why. The fault
is real: a joining shard whose partitions are still leased by a stopped (SIGSTOP) shard
that membership still counts as live.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway_helpers import auth, token
from tests.live_cluster import LiveCluster, Proc
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

LONG_LIVED = {"LQ_MEMBER_TTL_MS": "60000", "LQ_LEASE_TTL_MS": "60000",
              "LQ_LEASE_MARGIN_MS": "1000"}


@pytest.fixture
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0", **LONG_LIVED)
        c.wait_ready()
        yield c


def _readyz(proc: Proc) -> tuple[int, dict[str, Any]]:
    try:
        r = httpx.get(f"http://127.0.0.1:{proc.port}/readyz", timeout=1)
    except httpx.HTTPError:
        return 0, {}
    return r.status_code, r.json()


def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_shard_is_unready_until_it_holds_the_leases_it_owns(cluster: LiveCluster) -> None:
    first = cluster.shards["shard-0"]
    status, body = _readyz(first)
    assert status == 200 and body["ready"] is True and "error" not in body
    first.popen.send_signal(signal.SIGSTOP)  # its membership and leases live on for 60 s
    try:
        second = cluster.start_shard("shard-1", **LONG_LIVED)
        _until(lambda: _readyz(second)[0] == 503
               and "partitions it owns" in _readyz(second)[1].get("error", {}).get(
                   "message", ""), 20)
        body = _readyz(second)[1]
        assert body["ready"] is False and body["error"]["code"] == "unavailable", body
        time.sleep(1.0)  # still: the leases are the stopped shard's
        assert _readyz(second)[0] == 503
    finally:
        first.popen.send_signal(signal.SIGCONT)
    # awake, the first shard sees the second and releases what it no longer owns
    _until(lambda: _readyz(second)[0] == 200, 20)
    _until(lambda: _readyz(first)[0] == 200, 20)


def test_a_shard_whose_tail_falls_behind_is_unready_until_it_catches_up(
        redis_standalone: RedisServer) -> None:
    """Tail lag past `ready_max_lag_ms` (200 ms here): a shard that reads one log entry
    per partition per turn falls behind bursts of writes to one partition, says so on
    /readyz (503, the lag in the reason), and is ready again once it caught up."""
    with LiveCluster(redis_standalone.url) as c:
        shard = c.start_shard("shard-0", LQ_TAIL_COUNT="1", LQ_READY_MAX_LAG_MS="200")
        c.start_gateway()
        c.wait_ready()
        headers = auth(token("lagging"))
        seen: list[str] = []

        def lagging() -> bool:
            status, body = _readyz(shard)
            if status == 503:
                seen.append(body["error"]["message"])
            return any("tail lag" in m for m in seen)

        def lagging_within(seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while not lagging():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            return True

        with httpx.Client(base_url=f"http://127.0.0.1:{c.gateways[0].port}",
                          timeout=30) as http:
            for burst in range(20):  # until it lags: a busy machine writes slower too
                ops = [{"op": "put", "entity": "tasks", "id": f"r{i}",
                        "row": {"p": 1000 * burst + i}} for i in range(500)]
                r = http.post("/v1/batch", json={"ops": ops}, headers=headers)
                assert r.status_code == 200, r.text
                if lagging_within(1.0):  # no more writes than it takes: they all wait
                    break
            assert lagging(), seen
            assert any("over the bound of 200 ms" in m for m in seen), seen
            _until(lambda: _readyz(shard)[0] == 200, 30)
            body = _readyz(shard)[1]
            assert body["ready"] is True and "error" not in body
            # caught up and idle, the lag it reports (status, gauge) is 0, not the burst's
            _until(lambda: _readyz(shard)[1].get("lag_ms") == 0, 10)
