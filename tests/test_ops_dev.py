"""`lq dev` as a user runs it: one subprocess, then HTTP, WebSocket, `lq status`,
`lq token`, and SIGTERM, after which no process it started and no file is left; then
what ends an `lq dev` otherwise: a restart right after Ctrl-C with a client connected,
SIGKILL, and a closed terminal (SIGHUP).

One `lq dev` (2 shards, 2 gateways, embedded Redis) serves the module's first tests; the
last of them stops it. The tests after it start their own (1 shard, 1 gateway). Every
`lq dev` here keeps its state in a temporary directory (`LQ_DEV_STATE`), never in the
real home, and its children are found by the pids it prints and records, and checked
(and, after a failed test, killed) by pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import queue
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from lq._devstate import DevStateError, Owner, find_running, state_dir
from lq._net import port_free
from lq.cli import main
from tests.gateway_helpers import free_port
from tests.pids import alive

pytestmark = pytest.mark.slow

SCOPES = "lq:read:* lq:write:* lq:admin"


def _env(state: Path) -> dict[str, str]:
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
            while not all(_free(port + i) for i in range(1, gateways)):
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
                argv, env=_env(state), stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True, preexec_fn=_take_terminal, text=True,
            )
            os.close(slave)
            self.reader = threading.Thread(target=self._read_terminal, daemon=True)
        else:
            self.proc = subprocess.Popen(argv, env=_env(state), stdout=subprocess.PIPE,
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


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _gone_within(pids: set[int], seconds: float) -> list[int]:
    """The pids of `pids` still running after `seconds` (waiting no longer than needed)."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _lq(state: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lq", *argv], env={**_env(state), **env},
                          capture_output=True, text=True, timeout=30)


def test_a_busy_port_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    state = str(tmp_path / "state")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        assert main(["dev", "--port", str(port), "--state-dir", state]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["dev", "--gateways", "0", "--state-dir", state]) == 2
    assert not (tmp_path / "state" / "cluster.json").exists()


def test_a_port_whose_last_connections_wait_in_time_wait_is_free() -> None:
    with socket.socket() as listener:
        # as uvicorn listens; Linux lets a new bind pass a TIME_WAIT connection only if
        # both the new socket and the one that waits have SO_REUSEADDR
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server closes first, so its side ends in TIME_WAIT
            assert client.recv(1) == b""
    deadline = time.monotonic() + 5
    while _free(port):  # a plain bind, as the old check did, trips on TIME_WAIT ...
        assert time.monotonic() < deadline, "no TIME_WAIT on the server's port"
        time.sleep(0.01)
    assert port_free("127.0.0.1", port)  # ... the check that lq dev makes does not


def test_the_state_directory_is_private_and_held_by_one_lq_dev(tmp_path: Path) -> None:
    path = tmp_path / "state"
    owner = Owner.acquire(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        with pytest.raises(DevStateError, match="another lq dev"):
            Owner.acquire(path)
        secret = owner.secret()
        assert re.fullmatch(r"[0-9a-f]{64}", secret) and owner.secret() == secret
        assert stat.S_IMODE((path / "secret").stat().st_mode) == 0o600
        assert find_running(path) is None  # nothing recorded yet
    finally:
        owner.release()
    public = tmp_path / "public"
    public.mkdir(mode=0o755)
    public.chmod(0o755)
    with pytest.raises(DevStateError, match="chmod 700"):
        Owner.acquire(public)


def test_what_a_killed_lq_dev_left_is_ignored_and_then_removed(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    (path / "lq-redis-abc").mkdir()
    (path / "lq-redis-abc" / "appendonly.aof").write_text("*1\r\n")
    (path / "notes").mkdir()
    (path / "cluster.json").write_text(json.dumps({"pid": 1, "state": "ready"}))
    assert find_running(path) is None  # nobody holds the lock: a stale record
    owner = Owner.acquire(path)
    try:
        assert owner.sweep() == [path / "lq-redis-abc"]
        assert not (path / "cluster.json").exists() and (path / "notes").is_dir()
    finally:
        owner.release()


def test_the_state_directory_is_the_flag_then_the_environment_then_xdg() -> None:
    home = {"HOME": "/home/u"}
    assert state_dir(None, home) == Path("/home/u/.local/state/lq/dev")
    assert state_dir(None, {**home, "XDG_STATE_HOME": "/x"}) == Path("/x/lq/dev")
    assert state_dir(None, {**home, "XDG_STATE_HOME": "rel"}) == Path(
        "/home/u/.local/state/lq/dev")  # a relative XDG path is invalid: ignored
    env = {**home, "XDG_STATE_HOME": "/x", "LQ_DEV_STATE": "/s"}
    assert state_dir(None, env) == Path("/s")
    assert state_dir("/flag", env) == Path("/flag")


def test_lq_token_says_what_is_wrong_with_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("LQ_JWT_SECRET", raising=False)
    state = str(tmp_path / "none")
    assert main(["token", "--secret", "short", "--state-dir", state]) == 2
    err = capsys.readouterr().err
    assert err == ("lq token: --secret is 5 bytes long; an HS256 secret needs at least "
                   "32 bytes\n")
    monkeypatch.setenv("LQ_JWT_SECRET", "s" * 31)
    assert main(["token", "--state-dir", state]) == 2
    assert "LQ_JWT_SECRET is 31 bytes long" in capsys.readouterr().err
    monkeypatch.delenv("LQ_JWT_SECRET")
    assert main(["token", "--state-dir", state]) == 2
    assert capsys.readouterr().err == (
        f"lq token: no secret: give --secret or LQ_JWT_SECRET, or run lq dev once "
        f"(it keeps one in {state})\n")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    running = Dev(tmp_path_factory.mktemp("dev") / "state")
    try:
        yield running
    finally:
        running.cleanup()


def _status(dev: Dev) -> dict[str, Any]:
    out = _lq(dev.state, "status", "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_it_prints_its_urls_and_a_token_signed_with_the_kept_secret(dev: Dev) -> None:
    port = int(dev.urls[0].rsplit(":", 1)[1])
    assert dev.urls == [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    assert dev.redis_url.startswith("redis://127.0.0.1:")
    secret = (dev.state / "secret").read_text().strip()
    assert secret not in dev.output()  # the secret is never printed
    claims = jwt.decode(dev.token, secret, algorithms=["HS256"])
    assert claims["tenant"] == "dev" and claims["scope"] == SCOPES
    assert claims["exp"] > time.time() + 3600
    assert len(dev.pids) == 5  # redis, 2 shards, 2 gateways
    assert dev.redis_dir.is_dir() and dev.redis_dir.parent == dev.state
    for name in ("shard-0", "shard-1", "gateway-0", "gateway-1"):
        assert re.search(rf"^{name}\s+ready\s+pid \d+", dev.output(), re.M), name
    record = dev.recorded()
    assert record["pid"] == dev.proc.pid and record["state"] == "ready"
    assert record["gateway_urls"] == dev.urls and record["redis_url"] == dev.redis_url
    assert record["redis_dir"] == str(dev.redis_dir) and record["secret_from"] == "state"
    assert set(record["processes"].values()) == dev.pids
    assert sorted(record["processes"]) == ["gateway-0", "gateway-1", "redis", "shard-0",
                                           "shard-1"]
    for name in ("", "secret", "cluster.json"):
        mode = stat.S_IMODE((dev.state / name).stat().st_mode)
        assert mode == (0o700 if not name else 0o600), name


def test_a_write_is_read_back_through_each_gateway(dev: Dev) -> None:
    auth = {"Authorization": f"Bearer {dev.token}"}
    put = httpx.put(f"{dev.urls[0]}/v1/entities/tasks/rows/t1", headers=auth,
                    json={"title": "hello", "priority": 3}, timeout=10)
    assert put.status_code == 200, put.text
    for url in dev.urls:
        got = httpx.get(f"{url}/v1/entities/tasks/rows/t1", headers=auth, timeout=10)
        assert got.status_code == 200
        assert got.json()["row"] == {"title": "hello", "priority": 3}
        assert got.json()["version"] == put.json()["version"]


def test_the_readme_quickstart_prints_what_the_readme_shows(dev: Dev) -> None:
    """The quickstart's shell block runs as written in bash (only the port and the venv's
    path are this test's), then its Python example prints exactly the output shown."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quickstart = readme[readme.index("## Quickstart"):]
    shell = re.search(r"```bash\n(export TOKEN=.*?)```", quickstart, re.S)
    snippet = re.search(r"```python\n(.*?)```", quickstart, re.S)
    shown = re.search(r"```\n(now: .*?)```", quickstart, re.S)
    assert shell is not None and snippet is not None and shown is not None
    port = dev.urls[0].rsplit(":", 1)[1]
    script = (shell.group(1).replace("localhost:8080", f"localhost:{port}")
              .replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
              + '\necho\necho "TOKEN=$TOKEN"\n')  # curl ends without a newline
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=_env(dev.state),
                         capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    written, token_line = ran.stdout.strip().splitlines()[-2:]
    assert json.loads(written)["id"] == "t1"
    token = token_line.removeprefix("TOKEN=")
    code = snippet.group(1).replace("http://127.0.0.1:8080", dev.urls[0])
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TOKEN": token},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    printed = [line.rstrip() for line in out.stdout.splitlines()]  # `print` pads empty ids
    assert printed == shown.group(1).splitlines()


async def test_a_subscription_sees_a_write_made_through_another_gateway(dev: Dev) -> None:
    ws_url = dev.urls[0].replace("http://", "ws://") + "/v1/ws"
    headers = {"Authorization": f"Bearer {dev.token}"}
    query = {"entity": "notes", "sort": ["-n"], "limit": 5}
    async with websockets.connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "subscribe", "sub": "s1", "query": query}))
        ops = [m.get("op") or m["type"] for m in await _messages(ws, until="synced")]
        assert ops[0] == "ready" and ops[1:3] == ["subscribed", "reset"] and ops[-1] == "synced"
        async with httpx.AsyncClient(timeout=10) as http:
            put = await http.put(f"{dev.urls[1]}/v1/entities/notes/rows/n1", headers=headers,
                                 json={"n": 1})
        assert put.status_code == 200
        entered = (await _messages(ws, until="enter"))[-1]
        assert entered["id"] == "n1" and entered["row"] == {"n": 1}
        assert entered["version"] == put.json()["version"] and entered["to"] == 0


async def _messages(ws: Any, until: str, timeout: float = 15) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        raw = await _recv(ws, deadline - time.monotonic())
        data = json.loads(raw)
        for message in data if isinstance(data, list) else [data]:
            assert message["type"] != "error", message
            seen.append(message)
            if message.get("op") == until:
                return seen


async def _recv(ws: Any, left: float) -> Any:
    assert left > 0, "no such message in time"
    return await asyncio.wait_for(ws.recv(), left)


def test_lq_status_lists_both_shards_owning_all_256_partitions(dev: Dev) -> None:
    deadline = time.monotonic() + 15
    while True:
        report = _status(dev)
        shards = {s["id"]: s for s in report["shards"]}
        total = sum(s["partitions"] or 0 for s in shards.values())
        settled = not report["partitions"]["unleased"] and not report["partitions"]["moving"]
        if set(shards) == {"shard-0", "shard-1"} and total == 256 and settled:
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.3)
    assert all(s["partitions"] > 0 and s["leases"] == s["partitions"] for s in shards.values())
    assert len(report["gateways"]) == 2
    assert all(g["connections"] is not None for g in report["gateways"])
    assert report["redis"]["aof_enabled"] == 1
    assert report["redis"]["url"] == dev.redis_url
    assert report["dev"]["pid"] == dev.proc.pid and report["dev"]["gateway_urls"] == dev.urls
    table = _lq(dev.state, "status").stdout
    assert f"lq dev   pid {dev.proc.pid}, ready since " in table
    assert "shard-0" in table and "shard-1" in table and "gateways 2 live" in table
    assert "all 256 leased by their owners" in table
    # an explicit URL wins over the running lq dev's
    elsewhere = f"redis://127.0.0.1:{free_port()}/0"
    failed = _lq(dev.state, "status", "--redis-url", elsewhere)
    assert failed.returncode == 1 and f"cannot read {elsewhere}" in failed.stderr
    failed = _lq(dev.state, "status", LQ_REDIS_URL=elsewhere)
    assert failed.returncode == 1 and f"cannot read {elsewhere}" in failed.stderr


def test_lq_token_with_no_flags_signs_with_the_running_lq_devs_secret(dev: Dev) -> None:
    secret = (dev.state / "secret").read_text().strip()
    out = _lq(dev.state, "token", "--tenant", "acme", "--scope", "lq:read:tasks", "--ttl", "60")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["tenant"] == "acme" and claims["scope"] == "lq:read:tasks"
    assert 0 < claims["exp"] - time.time() <= 61
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "x" * 32, algorithms=["HS256"])
    got = httpx.get(f"{dev.urls[0]}/v1/entities/tasks/rows/t1",
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.status_code == 404  # accepted by the gateway; tenant acme has no such row
    bare = _lq(dev.state, "token").stdout.strip()  # no flag at all: tenant dev, all data
    url = f"{dev.urls[0]}/v1/entities/notes/rows/by-bare-token"
    put = httpx.put(url, headers={"Authorization": f"Bearer {bare}"}, json={"n": 0}, timeout=10)
    assert put.status_code == 200, put.text
    got = httpx.get(url, headers={"Authorization": f"Bearer {dev.token}"}, timeout=10)
    assert got.status_code == 200 and got.json()["row"] == {"n": 0}  # the same tenant
    # the environment wins over lq dev's secret
    other = "o" * 32
    token = _lq(dev.state, "token", LQ_JWT_SECRET=other).stdout.strip()
    assert jwt.decode(token, other, algorithms=["HS256"])["tenant"] == "dev"


def test_a_child_that_dies_is_reported_and_started_again(dev: Dev) -> None:
    pid = int(dev.find(r"^shard-1\s+ready\s+pid (\d+)"))
    os.kill(pid, signal.SIGKILL)
    dev.wait_for(r"^shard-1\s+exited\s+pid \d+.*ended by SIGKILL.*starting again", timeout=10)
    dev.wait_for(r"^shard-1\s+ready\s+pid \d+.*again", timeout=30)
    new_pid = int(re.findall(r"^shard-1\s+ready\s+pid (\d+)", dev.output(), re.M)[-1])
    assert new_pid != pid and alive(new_pid)
    dev.pids.add(new_pid)
    deadline = time.monotonic() + 5
    while dev.recorded()["processes"]["shard-1"] != new_pid:  # the record follows
        assert time.monotonic() < deadline, dev.recorded()
        time.sleep(0.05)


def test_sigterm_stops_every_process_and_removes_the_redis_directory(dev: Dev) -> None:
    dev.pids |= {int(p) for p in re.findall(r"\bpid (\d+)", dev.output())}
    assert len([pid for pid in dev.pids if alive(pid)]) == 5
    code = dev.stop()
    assert code == 0, dev.output()
    assert [pid for pid in dev.pids if alive(pid)] == []
    assert not dev.redis_dir.exists()
    assert sorted(p.name for p in dev.state.iterdir()) == ["lock", "secret"]
    out = dev.output()
    for name in ("gateway-0", "gateway-1", "shard-0", "shard-1"):
        assert re.search(rf"^{name}\s+stopped", out, re.M), out
    # gateways stop before shards, shards before Redis
    order = [out.index(f"{n} ") for n in ("gateway-1  stopped", "shard-0    stopped",
                                          "redis      stopped")]
    assert order == sorted(order)


@contextlib.contextmanager
def _live_client(url: str, token: str) -> Iterator[Any]:
    """A WebSocket client with a live subscription (its own thread answers the server)."""
    with ws_connect(url.replace("http://", "ws://") + "/v1/ws", open_timeout=10,
                    additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(json.dumps({"type": "subscribe", "sub": "s1",
                            "query": {"entity": "notes", "sort": ["-n"], "limit": 5}}))
        deadline = time.monotonic() + 15
        while True:
            data = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            ops = [m.get("op") for m in (data if isinstance(data, list) else [data])]
            if "synced" in ops:
                break
        yield ws


def _time_wait_on(port: int) -> bool:
    """True when a TCP socket on local port `port` waits in TIME_WAIT (state 06)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "06":
                    return True
    return False


def test_a_restart_right_after_ctrl_c_with_a_live_client_comes_up_and_keeps_tokens(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    runs = [Dev(state, shards=1, gateways=1)]
    try:
        first = runs[0]
        minted = _lq(state, "token", "--tenant", "acme").stdout.strip()
        with _live_client(first.urls[0], first.token):
            interrupted = time.monotonic()
            assert first.stop(signal.SIGINT, timeout=20) == 0, first.output()
            stopped = time.monotonic() - interrupted
            # the closed connections linger in TIME_WAIT on the gateway's port
            assert _time_wait_on(first.port)
            runs.append(Dev(state, port=first.port, shards=1, gateways=1))
        second = runs[1]
        assert second.urls == first.urls, second.output()
        assert stopped < 10, f"lq dev took {stopped:.1f} s to stop"
        for token in (first.token, minted):  # signed before the restart, still accepted
            put = httpx.put(f"{second.urls[0]}/v1/entities/tasks/rows/t1", json={"n": 1},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert put.status_code == 200, put.text
        # SIGKILL: lq dev cannot stop anything, the kernel ends its children
        record = second.recorded()
        children = set(record["processes"].values())
        assert len(children) == 3 and all(alive(pid) for pid in children)
        second.proc.kill()
        second.proc.wait(timeout=10)
        assert _gone_within(children, 5) == []
        # its record is stale now (no lq dev holds the lock): nobody takes it for running
        assert find_running(state) is None and Path(record["redis_dir"]).is_dir()
    finally:
        for run in runs:
            run.cleanup()


def test_closing_its_terminal_stops_everything_like_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state"
    left = state / "lq-redis-left"  # as a SIGKILLed lq dev leaves its Redis's files
    state.mkdir(mode=0o700)
    left.mkdir()
    (left / "appendonly.aof").write_text("*1\r\n")
    dev = Dev(state, shards=1, gateways=1, terminal=True)
    try:
        assert f"lq dev: removed {left}" in dev.output() and not left.exists()
        record = dev.recorded()
        children = set(record["processes"].values())
        assert len(children) == 3 and all(alive(pid) for pid in children)
        dev.hang_up()  # SIGHUP, and every later write of lq dev's fails
        assert dev.proc.wait(timeout=30) == 0
        assert _gone_within(children, 5) == []
        assert not Path(record["redis_dir"]).exists()
        assert sorted(p.name for p in state.iterdir()) == ["lock", "secret"]
    finally:
        dev.cleanup()
