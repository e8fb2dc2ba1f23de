"""Fixtures of the gateway tests (used through `pytest_plugins` in each test module).

One real uvicorn gateway per Redis backend for the whole session (the data is flushed
per test by the `redis_url` / `standalone_url` fixtures), and httpx clients that are
closed after each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.gateway_helpers import ThreadServer, config_for
from tests.redis_servers import LocalRedisCluster, RedisServer


@pytest.fixture(scope="session")
def gateway_servers(
    redis_standalone: RedisServer, redis_cluster_servers: LocalRedisCluster
) -> Iterator[dict[str, ThreadServer]]:
    # Depending on both Redis fixtures makes the servers stop before Redis does, so the
    # gateways' background loops never run against a Redis that is gone.
    del redis_standalone, redis_cluster_servers
    servers: dict[str, ThreadServer] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _server_for(servers: dict[str, ThreadServer], url: str) -> ThreadServer:
    if url not in servers:
        servers[url] = ThreadServer(config_for(url)).start()
    return servers[url]


@pytest.fixture
def gateway(gateway_servers: dict[str, ThreadServer], redis_url: str) -> ThreadServer:
    """The session's gateway over the (flushed) Redis of this test's backend."""
    return _server_for(gateway_servers, redis_url)


@pytest.fixture
def sgateway(gateway_servers: dict[str, ThreadServer], standalone_url: str) -> ThreadServer:
    """The session's gateway over the flushed standalone Redis."""
    return _server_for(gateway_servers, standalone_url)


@pytest.fixture
def http(gateway: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


@pytest.fixture
def shttp(sgateway: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sgateway.url, timeout=10) as client:
        yield client


@pytest.fixture
async def ahttp(gateway: ThreadServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        yield client
