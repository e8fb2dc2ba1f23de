"""Shard processes for `lq bench cluster` and the shard tests.

`Fleet` starts `python -m lq shard` subprocesses (JSON logs to one file per process
start), signals them by pid only (SIGKILL, SIGTERM, SIGSTOP, SIGCONT) and waits for their
`/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from cluster.loops import cancel_all, cancel_requested
from cluster.partition import PARTITIONS, owner
from lq.embedded import redis_or_embedded
from storage import Leases

__all__ = ["Fleet", "ShardProcess", "cancel_all", "cancelling", "http_get", "redis_and_logs",
           "shard_env"]

_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- processes


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec hook that SIGKILLs the child when this process dies (Linux only), so a
    crashed test run leaves no shard behind."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return preexec


def shard_env(
    redis_url: str, shard_id: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of one shard process: `LQ_` settings, any free HTTP port."""
    env = dict(os.environ)
    env.update(
        LQ_REDIS_URL=redis_url,
        LQ_SHARD_ID=shard_id,
        LQ_HTTP_PORT="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")])),
    )
    env.update(extra or {})
    return env


class ShardProcess:
    """One `lq shard` subprocess; signalled by its own pid only."""

    def __init__(self, shard_id: str, redis_url: str, log_path: Path,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.shard_id = shard_id
        self.log_path = log_path
        self.env = shard_env(redis_url, shard_id, extra_env)
        self.stopped = False  # SIGSTOPped and not yet continued
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lq", "shard"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(_ROOT),
                preexec_fn=_pdeathsig(),
            )
        self.started_at = time.monotonic()
        self._port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.stopped = False

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        return self.proc.poll()

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events written so far (non-JSON lines skipped)."""
        out: list[dict[str, Any]] = []
        try:
            text = self.log_path.read_bytes()
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    out.append(orjson.loads(line))
        return out

    def port(self) -> int | None:
        """The health port, from the process's `starting` event."""
        if self._port is None:
            for ev in self.events():
                if ev.get("event") == "starting" and ev.get("http_port"):
                    self._port = int(ev["http_port"])
                    break
        return self._port

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """End the process (SIGCONT first if stopped, then SIGKILL) and reap it."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


async def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET on 127.0.0.1: (status, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class Fleet:
    """The shard processes of one run; every process it starts it also ends."""

    def __init__(self, redis_url: str, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.procs: dict[str, ShardProcess] = {}
        self.history: list[ShardProcess] = []
        self._starts = itertools.count(1)

    def start(self, shard_id: str, env: Mapping[str, str] | None = None) -> ShardProcess:
        """Start (or restart, with the same id) a shard; the previous process of that id
        must have exited."""
        old = self.procs.get(shard_id)
        if old is not None and old.alive:
            raise RuntimeError(f"{shard_id} is still running (pid {old.pid})")
        log = self.log_dir / f"{shard_id}.{next(self._starts)}.log"
        while log.exists():  # another fleet's, in the same directory
            log = self.log_dir / f"{shard_id}.{next(self._starts)}.log"
        proc = ShardProcess(shard_id, self.redis_url, log, {**self.env, **(env or {})})
        self.procs[shard_id] = proc
        self.history.append(proc)
        return proc

    def __getitem__(self, shard_id: str) -> ShardProcess:
        return self.procs[shard_id]

    def running(self) -> list[str]:
        return sorted(i for i, p in self.procs.items() if p.alive)

    async def status(self, shard_id: str, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
        """(HTTP status of /readyz, its JSON body); (0, {}) when it does not answer."""
        proc = self.procs[shard_id]
        port = proc.port()
        if port is None or not proc.alive or proc.stopped:
            return 0, {}
        try:
            status, body = await http_get(port, "/readyz", timeout)
            return status, orjson.loads(body)
        except (OSError, TimeoutError, ValueError, IndexError):
            return 0, {}

    async def metrics(self, shard_id: str) -> dict[str, float]:
        """The shard's /metrics samples by name (`lq_shard_...`)."""
        port = self.procs[shard_id].port()
        if port is None:
            return {}
        _, body = await http_get(port, "/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    async def wait_ready(self, ids: Iterable[str] | None = None, timeout: float = 30.0) -> None:
        """Until every given (default: running) shard answers /readyz with 200."""
        wanted = list(ids) if ids is not None else self.running()
        deadline = time.monotonic() + timeout
        while True:
            states = {i: (await self.status(i))[0] for i in wanted}
            if all(s == 200 for s in states.values()):
                return
            for i in wanted:
                if not self.procs[i].alive:
                    raise RuntimeError(f"{i} exited with {self.procs[i].proc.returncode}:\n"
                                       f"{self.procs[i].log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"shards not ready after {timeout}s: {states}")
            await asyncio.sleep(0.05)

    async def balanced(self, leases: Leases, ids: Iterable[str]) -> str | None:
        """None when every lease is held by its HRW owner among `ids` and each of them
        is ready and serves exactly its share; else what is not so yet."""
        shards = sorted(ids)
        holders = await leases.holders(range(PARTITIONS))
        wrong = [p for p, h in holders.items() if h is None or h.shard != owner(p, shards)]
        if wrong:
            return f"{len(wrong)} leases not with their HRW owner, e.g. {wrong[:5]}"
        share = {s: sum(1 for p in range(PARTITIONS) if owner(p, shards) == s) for s in shards}
        states = {s: await self.status(s) for s in shards}
        served = {s: body.get("partitions") for s, (_, body) in states.items()}
        if all(code == 200 for code, _ in states.values()) and served == share:
            return None
        return f"ready {[(s, c) for s, (c, _) in states.items()]}, serving {served} of {share}"

    async def wait_balanced(self, leases: Leases, ids: Iterable[str],
                            timeout: float = 30.0) -> None:
        """Until `balanced`; TimeoutError (with the reason) after `timeout` seconds."""
        shards = list(ids)
        deadline = time.monotonic() + timeout
        why: str | None = "not looked yet"
        while time.monotonic() < deadline:
            try:
                why = await self.balanced(leases, shards)
            except Exception as e:  # Redis restarting: look again
                why = repr(e)
            if why is None:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"not balanced over {shards} after {timeout}s: {why}")

    def log_tails(self, lines: int = 30) -> str:
        parts = [f"--- {p.log_path.name} (pid {p.pid}) ---\n{p.log_tail(lines)}"
                 for p in self.history]
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.history:
            proc.close()


def cancelling() -> bool:
    """Python 3.11's lost-cancellation guard: `cluster.loops.cancel_requested`."""
    return cancel_requested()




@contextlib.contextmanager
def redis_and_logs(redis_url: str | None, logs: str | None) -> Iterator[tuple[str, Path]]:
    """The Redis a shard bench runs on (`redis_url`, or an embedded one with AOF, stopped
    on exit) and the directory for its shards' logs (`logs`, made if missing and kept;
    else a temporary one, removed on exit)."""
    with contextlib.ExitStack() as stack:
        if logs:
            where = Path(logs)
            where.mkdir(parents=True, exist_ok=True)
        else:
            where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lq-bench-")))
        yield stack.enter_context(redis_or_embedded(redis_url, appendonly=True)), where
