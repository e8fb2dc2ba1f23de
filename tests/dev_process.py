"""A running `lq dev` for the tests, as a user runs it: a subprocess on a pipe or on a
terminal of its own, what it printed, and the pids it recorded (shared by the lq dev
tests; every `lq dev` here keeps its state in a temporary directory, `LQ_DEV_STATE`)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

from tests.gateway_helpers import free_port
from tests.pids import alive


def dev_env(state: Path) -> dict[str, str]:
    """The test's environment without any LQ_ setting, with `state` as lq dev's state."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LQ_")},
            "LQ_DEV_STATE": str(state)}


def _take_terminal() -> None:
    """In the child, after its setsid: make its stdin (a pty) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Dev:
    """A running `lq dev` and what it printed: on a pipe, or on a terminal of its own
    (a pty whose closing is a hangup, as when a terminal window is closed)."""

    def __init__(self, state: Path, *, port: int | None = None, shards: int = 2,
                 gateways: int = 2, terminal: bool = False) -> None:
        if port is None:
            port = free_port()
            while not all(bind_free(port + i) for i in range(1, gateways)):
                port = free_port()
        self.state = state
        self.port = port
        argv = [sys.executable, "-m", "lq", "dev", "--port", str(port), "--shards",
                str(shards), "--gateways", str(gateways)]
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._hangup = threading.Event()
        self.master: int | None = None
        if terminal:
            self.master, slave = pty.openpty()
            self.proc = subprocess.Popen(
                argv, env=dev_env(state), stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True, preexec_fn=_take_terminal, text=True,
            )
            os.close(slave)
            self.reader = threading.Thread(target=self._read_terminal, daemon=True)
        else:
            self.proc = subprocess.Popen(argv, env=dev_env(state), stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
            self.reader = threading.Thread(target=self._read_pipe, daemon=True)
        self.reader.start()
        self.pids: set[int] = set()
        self.wait_for(r"^press Ctrl-C to stop", timeout=60)
        out = self.output()
        self.urls = re.findall(r"^\s+url\s+(\S+)", out, re.M)
        self.redis_url = self.find(r"^\s+redis\s+(\S+)")
        self.token = self.find(r"^\s+token\s+(\S+)")
        self.redis_dir = Path(self.find(r"dir (\S+)\)"))
        self.pids = {int(p) for p in re.findall(r"\bpid (\d+)", out)}

    def _read_pipe(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)
        self._new.put(None)

    def _read_terminal(self) -> None:
        assert self.master is not None
        pending = b""
        while not self._hangup.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every process on the terminal has closed it
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                self.lines.append(line)
                self._new.put(line)
        self._new.put(None)

    def hang_up(self) -> None:
        """Close the terminal: the kernel sends lq dev SIGHUP, and its writes fail."""
        assert self.master is not None
        self._hangup.set()
        self.reader.join(timeout=5)
        os.close(self.master)
        self.master = None

    def output(self) -> str:
        return "\n".join(self.lines)

    def recorded(self) -> dict[str, Any]:
        """What lq dev wrote in its state directory about the running cluster."""
        record: dict[str, Any] = json.loads((self.state / "cluster.json").read_text())
        return record

    def find(self, pattern: str) -> str:
        found = re.search(pattern, self.output(), re.M)
        assert found, f"{pattern!r} not in the output of lq dev:\n{self.output()}"
        return found.group(1)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output(), re.M):
            left = deadline - time.monotonic()
            assert left > 0, f"lq dev never printed {pattern!r}:\n{self.output()}"
            try:
                if self._new.get(timeout=left) is None:
                    assert re.search(pattern, self.output(), re.M), (
                        f"lq dev exited ({self.proc.poll()}):\n{self.output()}")
            except queue.Empty:
                pass

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"lq dev did not stop in {timeout} s:\n{self.output()}") from None
        finally:
            if self.master is None:
                self.reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def cleanup(self) -> None:
        """After a test, passed or failed: no process of this lq dev is left."""
        try:
            self.stop(timeout=20)
        finally:
            if self.master is not None:
                self.hang_up()
            with_recorded = set(self.pids)
            try:
                with_recorded |= set(self.recorded()["processes"].values())
            except (OSError, ValueError):
                pass
            for pid in with_recorded:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def bind_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gone_within(pids: set[int], seconds: float) -> list[int]:
    """The pids of `pids` still running after `seconds` (waiting no longer than needed)."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def run_lq(state: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lq", *argv], env={**dev_env(state), **env},
                          capture_output=True, text=True, timeout=30)
