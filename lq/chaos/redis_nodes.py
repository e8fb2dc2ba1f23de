"""The Redis of a chaos run: one standalone server with AOF, or a Redis Cluster of three
masters with one replica each, started from a `redis-server` binary on loopback.

Invariants: every node keeps its port and its directory (AOF, `nodes.conf`) for the
whole run, so a node killed and started again comes back as the same node with what
its AOF holds; nodes are signalled by their own pid only, run in their own sessions,
die with the runner (`lq._orphan_guard`), and `close()` ends them all and removes their
directories. The cluster tracks which node serves each third of the slots: a failover
swaps the roles of a master and its replica, and `masters()` always names the current
ones.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lq import _net
from lq._orphan_guard import guarded
from lq.chaos import resp
from lq.embedded import find_redis_server

__all__ = ["RedisCluster", "RedisNode", "Standalone", "free_port"]

_SLOTS = 16384
_BUS_OFFSET = 10000


def free_port(*, bus: bool = False) -> int:
    """A free loopback port (and port + 10000 free too when `bus`, for a cluster node)."""
    for _ in range(200):
        port = _net.free_port()
        if not bus or (port + _BUS_OFFSET <= 65535
                       and _net.port_free("127.0.0.1", port + _BUS_OFFSET)):
            return port
    raise RuntimeError("no free port on 127.0.0.1")


class RedisNode:
    """One `redis-server` child with a fixed port and directory."""

    def __init__(self, parent: Path, fsync: str, *, cluster: bool = False,
                 node_timeout_ms: int = 5000) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="node-", dir=parent))
        self.port = free_port(bus=cluster)
        self.fsync = fsync
        self.cluster = cluster
        self.node_timeout_ms = node_timeout_ms
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def argv(self) -> list[str]:
        args = [str(find_redis_server()), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
                "--appendfsync", self.fsync, "--protected-mode", "no",
                "--logfile", str(self.dir / "redis.log")]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(self.node_timeout_ms),
                     "--repl-diskless-sync-delay", "0"]
        return args

    def spawn(self) -> None:
        """Start the process (from the main thread: `lq._orphan_guard`); not waiting."""
        self.proc = subprocess.Popen(guarded(self.argv()), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.paused = False

    def start(self, timeout: float = 15.0) -> None:
        """Spawn and wait until it answers PING."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited with "
                                   f"{self.proc.returncode}: {self.log_tail()}")
            if resp.ping(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {self.port} did not answer in {timeout} s")

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        if sig is signal.SIGSTOP:
            self.paused = True
        elif sig is signal.SIGCONT:
            self.paused = False

    def kill(self) -> None:
        """SIGKILL (a crash: what the AOF has not synced is lost) and reap."""
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self.paused = False

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Standalone:
    """One server with AOF."""

    kind = "standalone"

    def __init__(self, parent: Path, fsync: str) -> None:
        self.node = RedisNode(parent, fsync)
        self.node.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.node.port}/0"

    def nodes(self) -> list[RedisNode]:
        return [self.node]

    def close(self) -> None:
        self.node.close()


class RedisCluster:
    """Three masters, each with one replica; see the module docstring."""

    kind = "cluster"

    def __init__(self, parent: Path, fsync: str, masters: int = 3,
                 timeout: float = 60.0) -> None:
        self.all = [RedisNode(parent, fsync, cluster=True) for _ in range(2 * masters)]
        self.pairs: list[tuple[RedisNode, RedisNode]] = [  # (master, replica) per third
            (self.all[i], self.all[masters + i]) for i in range(masters)]
        for node in self.all:
            node.start()
        self._build(timeout)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.all[0].port}"

    def nodes(self) -> list[RedisNode]:
        return list(self.all)

    def masters(self) -> list[RedisNode]:
        return [m for m, _ in self.pairs]

    @staticmethod
    def node_id(node: RedisNode) -> str:
        raw = resp.command(node.port, "CLUSTER", "MYID")
        assert isinstance(raw, bytes)
        return raw.decode()

    def _build(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        count = len(self.pairs)
        for i, (master, _) in enumerate(self.pairs):
            resp.command(master.port, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            first, last = i * _SLOTS // count, (i + 1) * _SLOTS // count
            resp.command(master.port, "CLUSTER", "ADDSLOTS", *range(first, last))
        for node in self.all[1:]:
            resp.command(node.port, "CLUSTER", "MEET", "127.0.0.1", self.all[0].port)
        self._until(lambda n: resp.info(n.port, "cluster-state").get("cluster_known_nodes")
                    == str(len(self.all)), deadline, "every node knows every other")
        for master, replica in self.pairs:
            resp.command(replica.port, "CLUSTER", "REPLICATE", self.node_id(master))
        self.wait_ok(deadline - time.monotonic())

    def _until(self, check: Callable[[RedisNode], bool], deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            try:
                if all(check(n) for n in self.all if n.proc is not None):
                    return
            except resp.RespError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis cluster: not reached: {what}")

    def healthy(self) -> bool:
        """Every node says `cluster_state:ok` and every replica's link is up."""
        try:
            for node in self.all:
                if resp.info(node.port, "cluster-state").get("cluster_state") != "ok":
                    return False
            return all(resp.info(r.port, "replication").get("master_link_status") == "up"
                       for _, r in self.pairs)
        except resp.RespError:
            return False

    def wait_ok(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster: not healthy in time\n"
                                   + "\n".join(n.log_tail(600) for n in self.all))
            time.sleep(0.05)

    def promote(self, index: int) -> None:
        """Its master being down, make the replica of third `index` the master
        (`CLUSTER FAILOVER TAKEOVER`: no vote needed) and swap their roles here."""
        master, replica = self.pairs[index]
        resp.command(replica.port, "CLUSTER", "FAILOVER", "TAKEOVER")
        deadline = time.monotonic() + 20
        while resp.info(replica.port, "replication").get("role") != "master":
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.port} was not promoted")
            time.sleep(0.02)
        self.pairs[index] = (replica, master)

    def rejoin(self, index: int) -> None:
        """The old master of third `index`, started again, replicates the new one."""
        master, replica = self.pairs[index]
        with contextlib.suppress(resp.RespError):
            resp.command(replica.port, "CLUSTER", "REPLICATE", self.node_id(master))

    def close(self) -> None:
        for node in self.all:
            node.close()
