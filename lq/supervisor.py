"""Child processes of `lq dev`: start, readiness, restart with backoff, ordered stop.

Invariants: every child runs in its own session, so a terminal's Ctrl-C reaches only the
supervisor, which then stops the children in the order it chooses (gateways, then
shards); a child is only ever signalled by its own pid: SIGTERM, then SIGKILL after
`stop_timeout`, and always reaped. Children are started from the main thread (`tick` and
`start_group` are called there) and wrapped by `lq._orphan_guard`, so on Linux the
kernel SIGKILLs them if the supervisor's process dies without stopping them. A child
that exits while not being stopped is reported and started again after a backoff (0.5 s
doubling to 30 s, reset once it has been ready for a minute). Each child's output is
read by a thread that either echoes it with the child's name or only keeps the last
lines, which are shown when the child dies or does not become ready; nothing is written
to disk.
"""

from __future__ import annotations

import collections
import enum
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lq._orphan_guard import guarded

__all__ = [
    "Abort", "Child", "ChildSpec", "ChildState", "Printer", "Supervisor", "describe_exit",
    "http_ready",
]

Printer = Callable[[str], None]

_TAIL_LINES = 200  # kept per child, shown when it dies
_BACKOFF_FIRST, _BACKOFF_MAX, _BACKOFF_RESET = 0.5, 30.0, 60.0


def http_ready(url: str, timeout: float = 0.5) -> bool:
    """True when `GET url` answers 200 (a process's /readyz)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def describe_exit(code: int) -> str:
    """`exit 0`, or the signal that ended a process (`SIGTERM`)."""
    if code < 0:
        try:
            return f"ended by {signal.Signals(-code).name}"
        except ValueError:
            return f"ended by signal {-code}"
    return f"exit {code}"


class Abort(Protocol):
    """Asked while waiting for readiness: set means give up (a `threading.Event` is one)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class ChildState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"  # exited unexpectedly, waiting to start again
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to run: `argv` with `env`, ready when `ready_url` answers 200."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    ready_url: str
    detail: str = ""  # shown next to its state, e.g. its URL


class Child:
    """One supervised process and its state."""

    def __init__(self, spec: ChildSpec, say: Printer, echo: bool) -> None:
        self.spec = spec
        self.say = say
        self.echo = echo
        self.state = ChildState.STOPPED
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.started_at = 0.0
        self.ready_at = 0.0
        self.restart_at = 0.0
        self.failures = 0
        self.pids: list[int] = []  # every pid this child has had, for the record
        self.reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            guarded(self.spec.argv), env=self.spec.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pids.append(self.proc.pid)
        self.state = ChildState.STARTING
        self.started_at = time.monotonic()
        self.reader = threading.Thread(
            target=self._read, args=(self.proc,), name=f"log-{self.spec.name}", daemon=True
        )
        self.reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self.tail.append(line)
                if self.echo:
                    self.say(f"{self.spec.name:<10} | {line}")

    def exited(self) -> int | None:
        """The exit code once the process has ended (and is reaped), else None."""
        return None if self.proc is None else self.proc.poll()

    def check_ready(self) -> bool:
        if self.state is ChildState.STARTING and http_ready(self.spec.ready_url):
            self.state = ChildState.READY
            self.ready_at = time.monotonic()
        return self.state is ChildState.READY

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def show_tail(self, lines: int = 20) -> None:
        if self.reader is not None and self.exited() is not None:
            self.reader.join(timeout=1.0)  # its last lines, up to the end of its output
        for line in list(self.tail)[-lines:]:
            self.say(f"{self.spec.name:<10} | {line}")


class Supervisor:
    """Children in start order; `tick` restarts the ones that die; `stop` ends them."""

    def __init__(
        self,
        say: Printer,
        *,
        echo: bool = False,
        stop_timeout: float = 15.0,
        abort: Abort | None = None,
    ) -> None:
        self.say = say
        self.echo = echo
        self.stop_timeout = stop_timeout
        self.abort: Abort = abort or threading.Event()
        self.children: list[Child] = []

    def _state(self, child: Child, state: str, extra: str = "") -> None:
        pid = f"pid {child.pid}" if child.pid is not None else ""
        parts = [f"{child.spec.name:<10} {state:<9} {pid:<10}", child.spec.detail, extra]
        self.say("  ".join(p for p in parts if p).rstrip())

    def start_group(self, specs: Sequence[ChildSpec], timeout: float) -> bool:
        """Start `specs` together and wait until each is ready; False (with the failed
        child's last lines shown) when one exits or is not ready within `timeout`, or
        when `abort` is set meanwhile."""
        group = [Child(spec, self.say, self.echo) for spec in specs]
        self.children += group
        for child in group:
            child.start()
            self._state(child, "starting")
        deadline = time.monotonic() + timeout
        pending = list(group)
        while pending:
            for child in list(pending):
                code = child.exited()
                if code is not None:
                    self._state(child, "failed", f"({describe_exit(code)}) while starting")
                    child.show_tail()
                    return False
                if child.check_ready():
                    took = child.ready_at - child.started_at
                    self._state(child, "ready", f"({took:.1f} s)")
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                for child in pending:
                    self._state(child, "failed", f"not ready after {timeout:.0f} s")
                    child.show_tail()
                return False
            if pending and self.abort.wait(0.1):
                return False
        return True

    def tick(self) -> None:
        """One supervision pass: report deaths, start again when due, note readiness."""
        now = time.monotonic()
        for child in self.children:
            if child.state in (ChildState.READY, ChildState.STARTING):
                code = child.exited()
                if code is not None:
                    if child.ready_at and now - child.ready_at > _BACKOFF_RESET:
                        child.failures = 0
                    delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2**child.failures)
                    child.failures += 1
                    child.state = ChildState.BACKOFF
                    child.restart_at = now + delay
                    self._state(child, "exited",
                                f"({describe_exit(code)}); starting again in {delay:.1f} s")
                    child.show_tail()
                elif child.state is ChildState.STARTING and child.check_ready():
                    took = child.ready_at - child.started_at
                    self._state(child, "ready", f"again ({took:.1f} s)")
            elif child.state is ChildState.BACKOFF and now >= child.restart_at:
                child.start()
                self._state(child, "starting", "again")

    def stop(self, groups: Sequence[Sequence[Child]]) -> None:
        """Stop `groups` one after the other; within a group, all at once."""
        for group in groups:
            for child in group:
                if child.exited() is None and child.proc is not None:
                    child.state = ChildState.STOPPING
                    child.signal(signal.SIGTERM)
                else:
                    child.state = ChildState.STOPPED
            deadline = time.monotonic() + self.stop_timeout
            for child in group:
                if child.proc is None or child.state is ChildState.STOPPED:
                    continue
                try:
                    code = child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                    self._state(child, "stopped", f"({describe_exit(code)})")
                except subprocess.TimeoutExpired:
                    child.signal(signal.SIGKILL)
                    child.proc.wait()
                    self._state(child, "killed", f"no exit {self.stop_timeout:.0f} s after SIGTERM")
                child.state = ChildState.STOPPED

    def of_kind(self, prefix: str) -> list[Child]:
        return [c for c in self.children if c.spec.name.startswith(prefix)]
