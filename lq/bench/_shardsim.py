"""Shard processes and a simulated gateway, for `lq bench cluster` and the shard tests.

`Fleet` starts `python -m lq shard` subprocesses (JSON logs to one file per process
start), signals them by pid only (SIGKILL, SIGTERM, SIGSTOP, SIGCONT) and waits for their
`/readyz`. `SimGateway` plays a gateway on the internal wire (DESIGN.md 5b, PROTOCOL.md
section 3): it creates its delta stream, registers subscriptions and sends `subscribe`
to the HRW owner (re-sending to a recomputed owner when no `reset` comes in time), reads
the frames on a client of its own and applies them per subscription exactly as a
gateway plus a client would:

- per registry id keep the newest epoch; accept a newer epoch only from a frame whose
  messages start with `reset`; drop older epochs. A newer epoch that does *not* start
  with `reset` means its `reset` was lost (a gap in another incarnation's counter):
  the frame is dropped and a `resync` is asked for;
- per (shard, incarnation) track the frame counter `n`; on a gap send `resync` for every
  registry id last reset by that incarnation; also for every one still waiting for its
  first `reset` (the lost frame may have been it: a re-sent `subscribe` would be a
  no-op on a shard that already serves the id) and for every one whose partition that
  shard owns now but whose last `reset` came from elsewhere (a claim's `reset` may have
  been lost: with no later delta nothing else would show it); drop their frames until
  the `reset`;
- number messages with `seq` and apply them to a list (window mode) or a set (changes
  mode), recording every protocol violation (`from` pointing at another id, a list
  longer than `limit`, a version going backwards, `synced` with a wrong count...).

Nothing here raises on a violation: each `SimSub` collects its `errors` and each
gateway its `anomalies`, for the caller to assert on.
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
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cluster.messages import Registration
from cluster.partition import PARTITIONS, owner, partition_of
from storage import (
    Control,
    DeltaFrame,
    Deltas,
    DeltaStreamGone,
    DeltaTrimmed,
    Leases,
    Membership,
    RedisClient,
    Registry,
    connect,
)

__all__ = [
    "Decoded",
    "Fleet",
    "FrameRecord",
    "ShardProcess",
    "SimGateway",
    "SimSub",
    "cancel_all",
    "http_get",
    "shard_env",
    "taken_over",
]

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

    async def balanced(self, client: RedisClient, ids: Iterable[str]) -> str | None:
        """None when every lease is held by its HRW owner among `ids` and each of them
        is ready and serves exactly its share; else what is not so yet."""
        shards = sorted(ids)
        holders = await Leases(client).holders(range(PARTITIONS))
        wrong = [p for p, h in holders.items() if h is None or h.shard != owner(p, shards)]
        if wrong:
            return f"{len(wrong)} leases not with their HRW owner, e.g. {wrong[:5]}"
        share = {s: sum(1 for p in range(PARTITIONS) if owner(p, shards) == s) for s in shards}
        states = {s: await self.status(s) for s in shards}
        served = {s: body.get("partitions") for s, (_, body) in states.items()}
        if all(code == 200 for code, _ in states.values()) and served == share:
            return None
        return f"ready {[(s, c) for s, (c, _) in states.items()]}, serving {served} of {share}"

    async def wait_balanced(self, client: RedisClient, ids: Iterable[str],
                            timeout: float = 30.0) -> None:
        """Until `balanced`; TimeoutError (with the reason) after `timeout` seconds."""
        shards = list(ids)
        deadline = time.monotonic() + timeout
        why: str | None = "not looked yet"
        while time.monotonic() < deadline:
            try:
                why = await self.balanced(client, shards)
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


# --------------------------------------------------------------------------- gateway


def _cancelling() -> bool:
    """Python 3.11's `asyncio.wait_for` (which redis-py sends every command through) can
    lose a cancellation: loops check for a pending one on every turn."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel and await `tasks`, cancelling again any that a lost cancellation kept
    running."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning


@dataclass(slots=True)
class Item:
    id: str
    version: int
    row: dict[str, Any]
    cursor: str | None = None


@dataclass
class SimSub:
    """One subscription as the gateway and its client see it."""

    rid: str
    p: int
    tenant: str
    query: dict[str, Any]
    created_at: float
    mode: str = "window"
    limit: int | None = None
    active: bool = True
    # wire state
    epoch: int | None = None
    source: tuple[str, str] | None = None  # (shard, inc) of the last accepted reset
    awaiting: bool = True  # a subscribe or resync is out; frames wait for its reset
    refresh: bool = False  # the next ask is a `resync` even before any reset
    asked_at: float = 0.0
    asks: int = 0
    resyncs: int = 0
    # client state
    seq: int = 0
    synced: bool = False
    truncated: bool = False
    items: list[Item] = field(default_factory=list)
    matched: dict[str, Item] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    since_reset: dict[str, int] = field(default_factory=dict)
    resets: int = 0
    reset_log: list[tuple[float, str, int]] = field(default_factory=list)  # (t, shard, epoch)
    synced_at: float | None = None
    first_reset_at: float | None = None
    errors: list[str] = field(default_factory=list)
    history: deque[tuple[Any, ...]] = field(default_factory=lambda: deque(maxlen=64))
    dropped_stale: int = 0
    dropped_newer: int = 0
    dropped_waiting: int = 0
    applied: int = 0

    def __post_init__(self) -> None:
        self.mode = str(self.query.get("mode", "window"))
        limit = self.query.get("limit")
        self.limit = int(limit) if limit is not None else None

    # -- what the client holds

    def ids(self) -> list[str]:
        if self.mode == "window":
            return [i.id for i in self.items]
        return sorted(self.matched)

    def rows(self) -> dict[str, Item]:
        if self.mode == "window":
            return {i.id: i for i in self.items}
        return dict(self.matched)

    # -- applying messages

    def _fail(self, text: str) -> None:
        recent = list(self.history)[-12:]
        self.errors.append(f"{self.rid} seq {self.seq}: {text}; recent: {recent}")

    def _version(self, msg: dict[str, Any]) -> None:
        row_id, version = msg.get("id"), msg.get("version")
        if not isinstance(row_id, str) or not isinstance(version, int):
            self._fail(f"{msg.get('op')} without id/version: {msg}")
            return
        last = self.versions.get(row_id)
        if last is not None and version < last:
            self._fail(f"version of {row_id} went back {last} -> {version}")
        self.versions[row_id] = max(version, last or 0)
        # A change reaches a list once: after the snapshot, an update, move or unmatch
        # (and a match) always carries a version newer than any this list has had for
        # the row since its reset (an enter or leave may repeat one: a promotion or an
        # eviction of an unchanged row).
        op = msg.get("op")
        seen = self.since_reset.get(row_id)
        live = op in ("update", "move", "unmatch") or (op == "match" and self.synced)
        if live and seen is not None and version <= seen:
            self._fail(f"{op} {row_id} v{version} again (already had v{seen}): a duplicate")
        self.since_reset[row_id] = max(version, seen or 0)

    def apply(self, msgs: list[dict[str, Any]], shard: str, epoch: int, now: float) -> None:
        for msg in msgs:
            self.seq += 1
            self.applied += 1
            op = msg.get("op")
            self.history.append((self.seq, shard, epoch % 100_000, op, msg.get("id"),
                                 msg.get("version", 0) % 100_000, msg.get("from"), msg.get("to")))
            if op == "reset":
                self.items.clear()
                self.matched.clear()
                self.since_reset.clear()
                self.synced = False
                self.truncated = False
                self.resets += 1
                self.reset_log.append((now, shard, epoch))
                if self.first_reset_at is None:
                    self.first_reset_at = now
                continue
            if op == "synced":
                held = len(self.items) if self.mode == "window" else len(self.matched)
                if msg.get("count") != held:
                    self._fail(f"synced count {msg.get('count')} but {held} held")
                self.synced = True
                self.truncated = bool(msg.get("truncated", False))
                self.synced_at = now
                continue
            self._version(msg)
            if self.mode == "window":
                self._window(op, msg)
            else:
                self._changes(op, msg)

    def _window(self, op: Any, msg: dict[str, Any]) -> None:
        items, row_id = self.items, msg.get("id")
        src, dst = msg.get("from"), msg.get("to")
        if not isinstance(src, int) or not isinstance(dst, int):
            self._fail(f"{op} without from/to: {msg}")
            return
        if op in ("leave", "move", "update") and not self._holds(src, row_id, op):
            return
        self._window_op(op, msg, str(row_id), src, dst)
        if self.limit is not None and len(items) > self.limit:
            self._fail(f"list of {len(items)} exceeds limit {self.limit}")

    def _holds(self, index: int, row_id: Any, op: Any) -> bool:
        items = self.items
        if 0 <= index < len(items) and items[index].id == row_id:
            return True
        at = items[index].id if 0 <= index < len(items) else None
        self._fail(f"{op} {row_id} from {index}: the list holds {at!r} there")
        return False

    def _window_op(self, op: Any, msg: dict[str, Any], row_id: str, src: int, dst: int) -> None:
        items = self.items
        if op == "enter":
            if src != -1 or not 0 <= dst <= len(items):
                self._fail(f"enter {row_id} from {src} to {dst} in a list of {len(items)}")
                return
            if any(i.id == row_id for i in items):
                self._fail(f"enter {row_id}: already in the list")
            items.insert(dst, _item(msg))
        elif op == "leave":
            if dst != -1:
                self._fail(f"leave {row_id} to {dst}")
            items.pop(src)
        elif op == "move":
            items.pop(src)
            if not 0 <= dst <= len(items):
                self._fail(f"move {row_id} to {dst} in a list of {len(items)}")
                dst = len(items)
            items.insert(dst, _item(msg))
        elif op == "update":
            if src != dst:
                self._fail(f"update {row_id} from {src} to {dst}")
            items[src] = _item(msg)
        else:
            self._fail(f"unknown window op {op!r}")

    def _changes(self, op: Any, msg: dict[str, Any]) -> None:
        row_id = str(msg.get("id"))
        if op == "match":
            if row_id in self.matched:
                self._fail(f"match {row_id}: already matched")
            self.matched[row_id] = Item(row_id, int(msg["version"]), msg.get("row") or {})
        elif op == "update":
            if row_id not in self.matched:
                self._fail(f"update {row_id}: not matched")
            self.matched[row_id] = Item(row_id, int(msg["version"]), msg.get("row") or {})
        elif op == "unmatch":
            if self.matched.pop(row_id, None) is None:
                self._fail(f"unmatch {row_id}: not matched")
        else:
            self._fail(f"unknown changes op {op!r}")


def _item(msg: dict[str, Any]) -> Item:
    return Item(str(msg["id"]), int(msg["version"]), msg.get("row") or {}, msg.get("cursor"))


Decoded = tuple[tuple[str, ...], list[dict[str, Any]]]
"""One group of a frame: its registry ids and its messages, decoded."""


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame as read, in stream order: enough to check fencing afterwards."""

    t: float
    shard: str
    inc: str
    n: int
    p: int
    epoch: int
    resets: tuple[str, ...]  # registry ids this frame resets


class SimGateway:
    """A gateway on the internal wire; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        gateway_id: str = "gw-sim",
        *,
        prefix: str = "lq",
        resend_s: float = 2.0,
        stream_ttl_s: int = 86_400,
        heartbeat_ms: int = 1000,
        journal: bool = True,
        on_frame: Callable[[DeltaFrame, list[Decoded], float], None] | None = None,
    ) -> None:
        self.url = redis_url
        self.id = gateway_id
        self.prefix = prefix
        self.resend_s = resend_s
        self.stream_ttl_s = stream_ttl_s
        self.heartbeat_ms = heartbeat_ms
        self.keep_journal = journal
        self.on_frame = on_frame
        self.client: RedisClient | None = None
        self.reader: RedisClient | None = None
        self.subs: dict[str, SimSub] = {}
        self.last_n: dict[tuple[str, str], int] = {}
        self.journal: list[FrameRecord] = []
        self.anomalies: list[str] = []
        self.gaps = 0
        self.read_errors = 0
        self.frames = 0
        self.sent: list[tuple[str, str, str, str]] = []  # (shard, op, rid, entry id)
        self.position = "0-0"
        self._counter = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._live: list[str] = []
        self._live_at = 0.0

    # -- lifecycle

    async def start(self) -> None:
        self.client = connect(self.url)
        self.reader = connect(self.url)
        self.position = await Deltas(self.client, self.prefix).create(self.id, self.stream_ttl_s)
        await self._heartbeat()
        self._tasks = [asyncio.create_task(self._read_loop()),
                       asyncio.create_task(self._ask_loop())]
        if self.heartbeat_ms > 0:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop()))

    async def _heartbeat(self) -> None:
        """Gateway liveness (shards drop what a gateway gone past their grace held)."""
        ttl = max(self.heartbeat_ms * 3, 1000)
        await Membership(self._c(), self.prefix).heartbeat("gateway", self.id, ttl, b"{}")

    async def _heartbeat_loop(self) -> None:
        while not _cancelling():
            await asyncio.sleep(self.heartbeat_ms / 1000)
            try:
                await self._heartbeat()
            except Exception as e:  # Redis away: try again on the next beat
                self.anomalies.append(f"heartbeat: {e!r}")

    async def close(self) -> None:
        await cancel_all(self._tasks)
        for client in (self.client, self.reader):
            if client is not None:
                await client.aclose()

    async def __aenter__(self) -> SimGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _c(self) -> RedisClient:
        assert self.client is not None, "start() first"
        return self.client

    # -- ownership as a gateway computes it

    async def live(self, max_age: float = 0.05) -> list[str]:
        now = time.monotonic()
        if now - self._live_at > max_age:
            self._live, _ = await Membership(self._c(), self.prefix).live("shard")
            self._live_at = now
        return self._live

    async def owner(self, p: int) -> str | None:
        return owner(p, await self.live())

    # -- subscriptions

    async def subscribe(self, tenant: str, query: dict[str, Any], *,
                        target: str | None = None) -> SimSub:
        """Register (gwsubs entry, then registration), then `subscribe` to the owner
        (or to `target`: a stale view of the cluster, say; re-sends go to the owner)."""
        rid = f"{self.id}.{next(self._counter)}"
        p = partition_of(tenant, str(query["entity"]))
        sub = SimSub(rid, p, tenant, dict(query), time.monotonic())
        sub.asked_at = sub.created_at  # not due for a re-send while it is being sent
        self.subs[rid] = sub
        await Registry(self._c(), self.prefix).put(p, Registration(rid, tenant, self.id, query))
        await self._send(sub, "subscribe", target)
        return sub

    async def reanchor(self, rid: str, query: dict[str, Any]) -> None:
        """Rewrite the registration with the new window, then `reanchor` to the owner;
        frames of the old window that arrive before the `reset` are dropped."""
        sub = self.subs[rid]
        sub.awaiting = True  # before any await: old-window frames wait for the reset
        sub.refresh = True
        sub.asked_at = time.monotonic()  # not due for a re-send yet
        sub.query = dict(query)
        sub.limit = query.get("limit")
        registration = Registration(rid, sub.tenant, self.id, query)
        await Registry(self._c(), self.prefix).put(sub.p, registration)
        await self._send(sub, "reanchor")

    async def unsubscribe(self, rid: str) -> None:
        sub = self.subs[rid]
        sub.active = False
        await Registry(self._c(), self.prefix).delete(sub.p, rid, self.id)
        target = await self.owner(sub.p)
        if target is not None:
            await Control(self._c(), self.prefix).send(target, "unsubscribe", sub.p, rid, self.id)

    async def _send(self, sub: SimSub, op: str, target: str | None = None) -> None:
        sub.awaiting = True
        sub.asked_at = time.monotonic()
        sub.asks += 1
        if target is None:
            target = await self.owner(sub.p)
        if target is not None:
            entry = await Control(self._c(), self.prefix).send(target, op, sub.p, sub.rid, self.id)
            self.sent.append((target, op, sub.rid, entry))

    def _ask(self, sub: SimSub, *, force: bool = False) -> None:
        """Want a fresh reset for `sub`: frames wait for it; the ask loop sends `resync`
        (`force`: even when one is already awaited)."""
        if force or not sub.awaiting:
            sub.awaiting = True
            sub.refresh = True
            sub.asked_at = 0.0  # due now
            sub.resyncs += 1

    async def _ask_loop(self) -> None:
        """Send due resyncs, and re-send subscribe/resync that got no reset in time."""
        while not _cancelling():
            await asyncio.sleep(0.05)
            with contextlib.suppress(Exception):  # Redis away: keep the last view
                await self.live(max_age=0.2)  # fresh enough for the gap rule
            now = time.monotonic()
            for sub in list(self.subs.values()):
                if not (sub.active and sub.awaiting):
                    continue
                due = sub.asked_at == 0.0 or now - sub.asked_at >= self.resend_s
                if due:
                    op = "resync" if sub.refresh or sub.epoch is not None else "subscribe"
                    try:
                        await self._send(sub, op)
                    except Exception as e:  # Redis away: try again on the next pass
                        self.anomalies.append(f"send {op} {sub.rid}: {e!r}")
                        sub.asked_at = 0.0
                        break

    # -- reading

    async def _read_loop(self) -> None:
        assert self.reader is not None
        deltas = Deltas(self.reader, self.prefix)
        while not _cancelling():
            try:
                got = await deltas.read(self.id, self.position, count=500, block_ms=200)
            except (DeltaStreamGone, DeltaTrimmed) as e:
                self.anomalies.append(f"delta stream: {e!r}")
                with contextlib.suppress(Exception):
                    self.position = await Deltas(self._c(), self.prefix).create(
                        self.id, self.stream_ttl_s)
                    for sub in self.subs.values():
                        self._ask(sub)
                await asyncio.sleep(0.05)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis restarting: keep the position, try again
                self.read_errors += 1
                await asyncio.sleep(0.05)
                continue
            now = time.monotonic()
            for frame in got.frames:
                self.frames += 1
                self._frame(frame, now)
            self.position = got.position

    def _frame(self, f: DeltaFrame, now: float) -> None:
        key = (f.shard, f.inc)
        last = self.last_n.get(key)
        if last is not None and f.n <= last:
            self.anomalies.append(f"{key}: n went from {last} to {f.n}; frame dropped")
            return
        if f.n != (last or 0) + 1:
            self.gaps += 1
            self.anomalies.append(f"{key}: gap, n {last} -> {f.n}")
            for waiting in self.subs.values():
                if waiting.source == key:
                    self._ask(waiting)
                elif waiting.epoch is None and waiting.active:
                    self._ask(waiting, force=True)
                elif waiting.active and owner(waiting.p, self._live) == f.shard:
                    self._ask(waiting)
        self.last_n[key] = f.n
        decoded: list[Decoded] = [(rids, orjson.loads(raw)) for rids, raw in f.groups]
        if self.on_frame is not None:
            self.on_frame(f, decoded, now)
        if self.keep_journal:
            resets = tuple(r for rids, msgs in decoded if msgs and msgs[0].get("op") == "reset"
                           for r in rids)
            self.journal.append(FrameRecord(now, f.shard, f.inc, f.n, f.p, f.epoch, resets))
        for rids, msgs in decoded:
            for rid in rids:
                sub = self.subs.get(rid)
                if sub is not None and sub.active:
                    self._deliver(sub, f, key, msgs, now)

    def _deliver(self, sub: SimSub, f: DeltaFrame, key: tuple[str, str],
                 msgs: list[dict[str, Any]], now: float) -> None:
        starts_reset = bool(msgs) and msgs[0].get("op") == "reset"
        if f.p != sub.p:
            sub.errors.append(f"{sub.rid}: frame of partition {f.p}, registered in {sub.p}")
            return
        if sub.epoch is None or f.epoch > sub.epoch:
            if not starts_reset:
                sub.dropped_newer += 1
                if sub.epoch is not None:
                    self._ask(sub)  # its reset was lost: ask for another
                return
            sub.epoch = f.epoch
        elif f.epoch < sub.epoch:
            sub.dropped_stale += 1
            return
        elif sub.awaiting and not starts_reset:
            sub.dropped_waiting += 1
            return
        if starts_reset:
            sub.source = key
            sub.awaiting = False
            sub.refresh = False
        sub.apply(msgs, f.shard, f.epoch, now)

    # -- summaries

    def errors(self) -> list[str]:
        return [e for sub in self.subs.values() for e in sub.errors]

    def all_synced(self, subs: Iterable[SimSub] | None = None) -> bool:
        chosen = self.subs.values() if subs is None else subs
        return all(s.synced and not s.awaiting for s in chosen if s.active)

    def subs_in(self, partitions: Iterable[int]) -> list[SimSub]:
        chosen = set(partitions)
        return [s for s in self.subs.values() if s.active and s.p in chosen]


def taken_over(subs: Iterable[SimSub], old_epochs: Mapping[int, int]) -> Callable[[], bool]:
    """A check: every sub got a `reset` under a newer epoch than `old_epochs[p]` and is
    synced again (what a failover or handoff must achieve)."""
    chosen = list(subs)

    def check() -> bool:
        return all(
            s.reset_log and s.reset_log[-1][2] > old_epochs[s.p] and s.synced and not s.awaiting
            for s in chosen
        )

    return check
