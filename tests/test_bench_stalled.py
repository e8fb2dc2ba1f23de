"""`lq bench gateway`'s slow-reader case with tiny sizes, on real processes, so it cannot
rot: its table has every row, and the stalled reader overflowed and was reset."""

from __future__ import annotations

import httpx
import pytest

from lq.bench._stalled import stalled_reader
from tests.gateway_helpers import auth, token
from tests.live_clients import new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(120)


async def test_the_stalled_reader_case_runs(redis_standalone: RedisServer) -> None:
    with LiveCluster(redis_standalone.url) as cluster:
        cluster.start_shard("shard-0")
        gateway = cluster.start_gateway(LQ_OUTBOX_MAX_BYTES="262144")
        cluster.wait_ready()
        headers = auth(token(new_tenant()))
        async with httpx.AsyncClient(base_url=cluster.url(), timeout=30,
                                     headers=headers) as http:
            rows = await stalled_reader(http, gateway.port, headers, n=3, probes=2)
    table = {measure: value for measure, value, _ in rows}
    assert len(table) == 5, rows
    assert int(table["stalled reader reading again"].split()[0]) >= 1
    held = table["held for the stalled reader"]
    assert held.endswith(" KiB") and int(held.split()[0].replace(",", "")) > 0
