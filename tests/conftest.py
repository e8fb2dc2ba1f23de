"""Shared fixtures: real Redis servers (standalone and a 3-master cluster), flushed per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_servers import (
    LocalRedisCluster,
    RedisServer,
    describe_backend,
    start_cluster,
    start_standalone,
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [describe_backend()]


@pytest.fixture(scope="session")
def redis_standalone() -> Iterator[RedisServer]:
    """One standalone Redis for the whole session (testcontainers or a local redis-server)."""
    server = start_standalone()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_servers() -> Iterator[LocalRedisCluster]:
    """A 3-master Redis Cluster of local redis-server processes for the whole session."""
    cluster = start_cluster(masters=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(
    params=[
        pytest.param("standalone", id="standalone"),
        pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
    ]
)
def redis_url(request: pytest.FixtureRequest) -> str:
    """``redis://127.0.0.1:<port>/0`` or ``redis+cluster://127.0.0.1:<port>``, all data flushed."""
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster_servers")
        cluster.flushall()
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_standalone")
    server.flushall()
    return server.url


@pytest.fixture
def standalone_url(redis_standalone: RedisServer) -> str:
    """``redis://127.0.0.1:<port>/0`` of the session's standalone server, all data flushed."""
    redis_standalone.flushall()
    return redis_standalone.url
