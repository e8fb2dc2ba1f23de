"""Real shard and gateway processes on a real Redis, for the live tests.

`LiveCluster` starts `python -m lq shard` and `python -m lq gateway` children with short
heartbeats, leases and grace periods (so failover and clean-up take about a second),
under a key prefix of their own, so clusters can share the session's Redis without a
flush. Each process logs to a file; `logs()` returns the tails for a failing test.
Processes are ended by their own pid (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.gateway_helpers import SECRET, free_port

__all__ = ["FAST_GATEWAY", "FAST_SHARD", "LiveCluster", "Proc"]

FAST_SHARD = {
    "LQ_HEARTBEAT_MS": "200",
    "LQ_MEMBER_TTL_MS": "1000",
    "LQ_LEASE_TTL_MS": "1000",
    "LQ_LEASE_MARGIN_MS": "200",
    "LQ_GATEWAY_GRACE_MS": "1000",
    "LQ_EXPIRY_INTERVAL_MS": "200",
    "LQ_CONTROL_BLOCK_MS": "200",
}
FAST_GATEWAY = {
    "LQ_HEARTBEAT_MS": "200",
    "LQ_MEMBER_TTL_MS": "1000",
    "LQ_SUBSCRIBE_TIMEOUT": "1.0",
    "LQ_ACCESS_LOG": "false",
    "LQ_DELTA_BLOCK_MS": "500",
    "LQ_CANARY_INTERVAL": "0",  # off unless a test turns it on: tests count registrations
}


class Proc:
    """One child process with its log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, and wait for it."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, wait (SIGKILL past `timeout`); the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(10)

    def rss_kib(self) -> int:
        """Resident memory (Linux /proc), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def tail(self, limit: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_bytes()[-limit:].decode(errors="replace")

    def close(self) -> None:
        self.kill()
        self.log.close()


class LiveCluster:
    """Shards and gateways under one fresh key prefix on one Redis."""

    def __init__(self, redis_url: str, **gateway_env: str) -> None:
        self.redis_url = redis_url
        self.prefix = f"lqt{secrets.token_hex(3)}"
        self.dir = Path(tempfile.mkdtemp(prefix="lq-live-"))
        self.gateway_env = gateway_env
        self.shards: dict[str, Proc] = {}
        self.gateways: list[Proc] = []
        self.procs: list[Proc] = []  # everything started, restarted ones included

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
        env.update(LQ_REDIS_URL=self.redis_url, LQ_PREFIX=self.prefix, LQ_JWT_SECRET=SECRET)
        env.update(extra)
        return env

    def start_shard(self, shard_id: str, **env: str) -> Proc:
        port = free_port()
        extra = {**FAST_SHARD, "LQ_SHARD_ID": shard_id, "LQ_HTTP_PORT": str(port), **env}
        name = shard_id if shard_id not in self.shards else f"{shard_id}-{len(self.procs)}"
        proc = Proc(name, [sys.executable, "-m", "lq", "shard"], self._env(extra), self.dir)
        proc.port = port
        self.procs.append(proc)
        self.shards[shard_id] = proc
        return proc

    def start_gateway(self, **env: str) -> Proc:
        port = free_port()
        name = f"gateway-{len(self.gateways)}"
        extra = {**FAST_GATEWAY, **self.gateway_env, **env}
        cmd = [sys.executable, "-m", "lq", "gateway", "--port", str(port)]
        proc = Proc(name, cmd, self._env(extra), self.dir)
        proc.port = port
        self.gateways.append(proc)
        self.procs.append(proc)
        return proc

    def restart_gateway(self, i: int, **env: str) -> Proc:
        """A new gateway process on gateway `i`'s port (a restart, or a deploy): the old
        one is killed first if it still runs; it takes `i`'s place in `gateways`."""
        old = self.gateways[i]
        old.kill()
        extra = {**FAST_GATEWAY, **self.gateway_env, **env}
        cmd = [sys.executable, "-m", "lq", "gateway", "--port", str(old.port)]
        proc = Proc(f"gateway-{i}-{len(self.procs)}", cmd, self._env(extra), self.dir)
        proc.port = old.port
        self.gateways[i] = proc
        self.procs.append(proc)
        return proc

    def wait_ready(self, timeout: float = 30) -> None:
        """Every started process answers its /readyz (shards: all partitions claimed)."""
        deadline = time.monotonic() + timeout
        procs = [*self.shards.values(), *self.gateways]
        with httpx.Client(timeout=1) as client:
            for proc in procs:
                if not proc.alive():
                    continue
                while True:
                    try:
                        if client.get(f"http://127.0.0.1:{proc.port}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if not proc.alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"{proc.name} not ready:\n{proc.tail()}")
                    time.sleep(0.05)

    def wait_settled(self, timeout: float = 30) -> None:
        """Every live shard is ready again (after a kill or a join: claims are done)."""
        time.sleep(1.2)  # a membership TTL: the dead one is gone from everyone's live set
        self.wait_ready(timeout)

    def url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.gateways[i].port}"

    def ws_url(self, i: int = 0) -> str:
        return f"ws://127.0.0.1:{self.gateways[i].port}/v1/ws"

    def logs(self) -> str:
        parts = [f"--- {p.name}\n{p.tail()}" for p in self.procs]
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()

    def __enter__(self) -> LiveCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
