"""The Redis fixtures themselves: real servers, flushed between tests, a cluster on all slots."""

from __future__ import annotations

import itertools
import subprocess

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from tests.redis_servers import (
    CLUSTER_SLOTS,
    LocalRedisCluster,
    LocalRedisServer,
    RedisServer,
    cluster_info,
    find_redis_cli,
    ping,
    start_standalone,
)

LEFTOVER_KEY = "lq:test:leftover"


def _dbsize(url: str, cluster: LocalRedisCluster | None) -> int:
    """How many of this file's keys exist. Only `lq:test*` keys count: session fixtures of
    other tests (a gateway's live loops, say) may write their own keys meanwhile."""
    if url.startswith("redis+cluster://"):
        assert cluster is not None
        total = 0
        for host, port in cluster.nodes:
            with redis.Redis(host=host, port=port) as client:
                total += sum(1 for _ in client.scan_iter(match="lq:test*", count=1000))
        return total
    with redis.Redis.from_url(url) as client:
        return sum(1 for _ in client.scan_iter(match="lq:test*", count=1000))


def test_standalone_set_get_round_trip(standalone_url: str, redis_standalone: RedisServer) -> None:
    assert standalone_url == f"redis://{redis_standalone.host}:{redis_standalone.port}/0"
    assert redis_standalone.kind.startswith(("testcontainers", "local "))
    with redis.Redis.from_url(standalone_url, decode_responses=True) as client:
        assert client.set("lq:test:k", "v") is True
        assert client.get("lq:test:k") == "v"
        assert _dbsize(standalone_url, None) == 1


# The next two run in file order: the first leaves a key behind, the second needs it gone.
def test_flush_1_leave_data_behind(redis_url: str, request: pytest.FixtureRequest) -> None:
    if redis_url.startswith("redis+cluster://"):
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster_servers")
        with RedisCluster(host=cluster.nodes[0][0], port=cluster.nodes[0][1]) as rc:
            for i in range(32):
                rc.set(f"{LEFTOVER_KEY}:{{{i}}}", "x")
        assert _dbsize(redis_url, cluster) == 32
    else:
        with redis.Redis.from_url(redis_url) as client:
            client.set(LEFTOVER_KEY, "x")
        assert _dbsize(redis_url, None) == 1


def test_flush_2_data_is_gone(redis_url: str, request: pytest.FixtureRequest) -> None:
    cluster: LocalRedisCluster | None = None
    if redis_url.startswith("redis+cluster://"):
        cluster = request.getfixturevalue("redis_cluster_servers")
    assert _dbsize(redis_url, cluster) == 0


@pytest.mark.cluster
def test_flushall_helpers_empty_everything(
    redis_standalone: RedisServer, redis_cluster_servers: LocalRedisCluster
) -> None:
    with redis_standalone.client() as client:
        client.mset({"lq:test:a": 1, "lq:test:b": 2})
    host, port = redis_cluster_servers.nodes[0]
    with RedisCluster(host=host, port=port) as rc:
        for i in range(16):
            rc.set(f"lq:test:k{{{i}}}", i)
    redis_standalone.flushall()
    redis_cluster_servers.flushall()
    assert _dbsize(redis_standalone.url, None) == 0
    assert _dbsize(redis_cluster_servers.url, redis_cluster_servers) == 0


@pytest.mark.cluster
def test_cluster_shape_and_url(redis_cluster_servers: LocalRedisCluster) -> None:
    nodes = redis_cluster_servers.nodes
    assert len(nodes) == 3
    assert all(host == "127.0.0.1" for host, _ in nodes)
    assert redis_cluster_servers.url == f"redis+cluster://127.0.0.1:{nodes[0][1]}"
    for host, port in nodes:
        info = cluster_info(host, port)
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "3"
        assert info["cluster_size"] == "3"
        assert info["cluster_slots_ok"] == str(CLUSTER_SLOTS)


@pytest.mark.cluster
def test_cluster_writes_hash_tags_and_every_slot(redis_cluster_servers: LocalRedisCluster) -> None:
    cluster = redis_cluster_servers
    cluster.flushall()
    host, port = cluster.nodes[0]

    # One key for every slot, found by walking hash tags {0}, {1}, ...
    key_for_slot: dict[int, str] = {}
    for i in itertools.count():
        key_for_slot.setdefault(key_slot(f"{{{i}}}".encode()), f"{{{i}}}:k")
        if len(key_for_slot) == CLUSTER_SLOTS:
            break

    with RedisCluster(host=host, port=port, decode_responses=True) as rc:
        for i in range(256):
            rc.set(f"{{{i}}}:tag", str(i))
        assert [rc.get(f"{{{i}}}:tag") for i in range(256)] == [str(i) for i in range(256)]
        pipe = rc.pipeline(transaction=False)
        for slot, key in key_for_slot.items():
            pipe.set(key, slot)
        assert all(pipe.execute())
        assert rc.get(key_for_slot[CLUSTER_SLOTS - 1]) == str(CLUSTER_SLOTS - 1)

    # Count only this test's keys: session fixtures of other tests (a gateway's live
    # loops, say) may write their own keys into the shared cluster meanwhile.
    per_node = []
    for node_host, node_port in cluster.nodes:
        with redis.Redis(host=node_host, port=node_port) as client:
            per_node.append(sum(1 for _ in client.scan_iter(match="{*}:[kt]*", count=1000)))
        assert cluster_info(node_host, node_port)["cluster_state"] == "ok"
    assert all(n > 0 for n in per_node)
    tag_keys = 256
    assert sum(per_node) == CLUSTER_SLOTS + tag_keys


@pytest.mark.slow
def test_restart_with_aof_keeps_data() -> None:
    server = start_standalone(appendonly=True)
    try:
        with server.client() as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            client.set("lq:test:durable", "still here")
            client.rpush("lq:test:list", "a", "b", "c")
        port = server.port
        old_pid = server.pid if isinstance(server, LocalRedisServer) else None
        server.restart()
        if isinstance(server, LocalRedisServer):
            assert server.port == port
            assert server.pid != old_pid
        with server.client() as client:
            assert client.get("lq:test:durable") == "still here"
            assert client.lrange("lq:test:list", 0, -1) == ["a", "b", "c"]
    finally:
        server.stop()
    if isinstance(server, LocalRedisServer):
        assert server.pid is None
        assert not server.dir.exists()
        assert not ping(server.host, server.port)


def test_local_server_without_aof_forgets_on_restart() -> None:
    server = LocalRedisServer()
    try:
        assert server.kind.startswith(f"local {server.binary} ")
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with server.client() as client:
            client.set("k", "v")
        cli = subprocess.run(
            [str(find_redis_cli()), "-h", server.host, "-p", str(server.port), "GET", "k"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        assert cli.stdout.strip() == "v"
        server.restart()
        with server.client() as client:
            assert client.get("k") is None
    finally:
        server.stop()
    assert not ping(server.host, server.port)
