"""The shard and gateway processes of a chaos run: `python -m lq shard|gateway` children.

Invariants: a process is signalled by its own pid only (SIGKILL, SIGTERM, SIGSTOP,
SIGCONT) and always reaped; each runs in its own session and dies with the runner
(`lq._orphan_guard`); every start of a process appends to its one log file in the run
directory, so a failure can be read afterwards. A gateway keeps its port across
restarts (clients hold the list of gateway URLs); a shard keeps its id, and gets a new
incarnation on every start, as a StatefulSet pod would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lq._orphan_guard import guarded
from lq.chaos.redis_nodes import free_port

__all__ = ["ChaosProc", "base_env"]


def base_env(redis_url: str, secret: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment every child gets: no inherited `LQ_` setting, the run's Redis
    and JWT secret, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    env.update(LQ_REDIS_URL=redis_url, LQ_JWT_SECRET=secret)
    env.update(extra)
    return env


class ChaosProc:
    """One shard or gateway: its command, log file, port, and current process."""

    def __init__(self, name: str, kind: str, env: dict[str, str], log_dir: Path,
                 port: int | None = None) -> None:
        self.name = name
        self.kind = kind  # "shard" or "gateway"
        self.port = port if port is not None else free_port()
        self.env = dict(env)
        if kind == "shard":
            self.env.update(LQ_SHARD_ID=name, LQ_HTTP_HOST="127.0.0.1",
                            LQ_HTTP_PORT=str(self.port))
            self.argv = [sys.executable, "-m", "lq", "shard"]
        else:
            self.argv = [sys.executable, "-m", "lq", "gateway", "--host", "127.0.0.1",
                         "--port", str(self.port)]
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is still running (pid {self.pid})")
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(guarded(self.argv), env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self.paused = False
        self.started_at = time.monotonic()

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            if sig is signal.SIGSTOP:
                self.paused = True
            elif sig is signal.SIGCONT:
                self.paused = False

    def wait(self, timeout: float) -> int | None:
        """The exit code once ended (reaped), or None after `timeout` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL (after SIGCONT if paused) and reap."""
        if self.alive():
            self.send(signal.SIGCONT)
            self.send(signal.SIGKILL)
        self.wait(10)
        self.paused = False

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL past `timeout`. The exit code."""
        self.send(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
            code = self.wait(1)
        return code

    def tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return ""
