"""The delivery canary on real processes: the gateway's own row comes back as a delta
(the delay is a metric), `/readyz` fails with a reason when deltas stop while a shard
still counts as live (the only shard stopped with SIGSTOP, its membership and leases
long-lived), and comes back when they flow again; the canary's tenant is refused in
tokens.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth import CANARY_TENANT
from tests.gateway_helpers import auth, token
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

TIMEOUT_S = 2.0
LONG_LIVED = {"LQ_MEMBER_TTL_MS": "60000", "LQ_LEASE_TTL_MS": "60000",
              "LQ_LEASE_MARGIN_MS": "1000"}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url, LQ_CANARY_INTERVAL="0.25",
                     LQ_CANARY_TIMEOUT=str(TIMEOUT_S)) as c:
        c.start_shard("shard-0", **LONG_LIVED)
        c.start_gateway()
        c.wait_ready()
        yield c


def _metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _until(check: object, timeout: float) -> float:
    """Poll `check()` until true; the seconds it took."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return time.monotonic() - start


def test_the_canary_delay_is_measured(cluster: LiveCluster) -> None:
    with httpx.Client(base_url=cluster.url(), timeout=5) as http:
        _until(lambda: _metric(http, "lq_canary_delay_seconds_count") >= 3, 10)
        assert _metric(http, "lq_canary_delay_seconds_sum") < 3 * 1.0
        assert 0 <= _metric(http, "lq_canary_age_seconds") < TIMEOUT_S
        assert http.get("/readyz").json()["ready"] is True
        # the canary is no client's: /v1/cluster counts no subscription on this gateway
        body = http.get("/v1/cluster", headers=auth(token("ops", scope="lq:admin"))).json()
        gateways = body["gateways"]
        assert [g["subscriptions"] for g in gateways] == [0], gateways


def test_a_stopped_delivery_turns_the_gateway_unready_and_back(cluster: LiveCluster) -> None:
    shard = cluster.shards["shard-0"]
    with httpx.Client(base_url=cluster.url(), timeout=5) as http:
        assert http.get("/readyz").status_code == 200
        shard.popen.send_signal(signal.SIGSTOP)  # alive in membership for 60 s
        try:
            took = _until(lambda: http.get("/readyz").status_code == 503, TIMEOUT_S + 5)
            assert took <= TIMEOUT_S + 2.0
            body = http.get("/readyz").json()
            assert body["ready"] is False and body["live_shards"] == 1
            assert body["error"]["code"] == "unavailable"
            assert "no canary delta" in body["error"]["message"], body
            assert _metric(http, "lq_canary_age_seconds") > TIMEOUT_S
        finally:
            shard.popen.send_signal(signal.SIGCONT)
        _until(lambda: http.get("/readyz").status_code == 200, 10)


def test_the_canary_tenant_cannot_be_used_by_a_token(cluster: LiveCluster) -> None:
    tok = token(CANARY_TENANT)
    with httpx.Client(base_url=cluster.url(), timeout=5) as http:
        r = http.get("/v1/entities/canary/rows/x", headers=auth(tok))
        assert r.status_code == 401, r.text
        assert "reserved" in r.json()["error"]["message"]
        r = http.put("/v1/entities/canary/rows/x", json={"gw": "x"}, headers=auth(tok))
        assert r.status_code == 401, r.text
