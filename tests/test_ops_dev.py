"""`lq dev` as a user runs it: one subprocess, then HTTP, WebSocket, `lq status`,
`lq token`, and SIGTERM, after which no process it started and no file is left.

One `lq dev` (2 shards, 2 gateways, embedded Redis) serves the whole module; the last
test stops it. Its children are found by the pids it prints and checked by pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from lq.cli import main
from tests.gateway_helpers import free_port

pytestmark = pytest.mark.slow

SCOPES = "lq:read:* lq:write:* lq:admin"


class Dev:
    """A running `lq dev` and what it printed."""

    def __init__(self) -> None:
        port = free_port()
        while not _free(port + 1):
            port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lq", "dev", "--port", str(port), "--shards", "2",
             "--gateways", "2"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_for(r"^press Ctrl-C to stop", timeout=60)
        out = self.output()
        self.urls = re.findall(r"^\s+url\s+(\S+)", out, re.M)
        self.redis_url = self.find(r"^\s+redis\s+(\S+)")
        self.token = self.find(r"^\s+token\s+(\S+)")
        self.secret = self.find(r"^\s+secret\s+(\S+)")
        self.redis_dir = Path(self.find(r"dir (\S+)\)"))
        self.pids = {int(p) for p in re.findall(r"\bpid (\d+)", out)}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)
        self._new.put(None)

    def output(self) -> str:
        return "\n".join(self.lines)

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

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_busy_port_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dev", "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["dev", "--gateways", "0"]) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    running = Dev()
    try:
        yield running
    finally:
        running.stop()
        for pid in running.pids:  # a failed test must not leave processes either
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _status(dev: Dev) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "lq", "status", "--redis-url", dev.redis_url, "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_it_prints_its_urls_and_a_token_signed_with_the_printed_secret(dev: Dev) -> None:
    port = int(dev.urls[0].rsplit(":", 1)[1])
    assert dev.urls == [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    assert dev.redis_url.startswith("redis://127.0.0.1:")
    claims = jwt.decode(dev.token, dev.secret, algorithms=["HS256"])
    assert claims["tenant"] == "dev" and claims["scope"] == SCOPES
    assert claims["exp"] > time.time() + 3600
    assert len(dev.pids) == 5  # redis, 2 shards, 2 gateways
    assert dev.redis_dir.is_dir()
    for name in ("shard-0", "shard-1", "gateway-0", "gateway-1"):
        assert re.search(rf"^{name}\s+ready\s+pid \d+", dev.output(), re.M), name


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
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quickstart = readme[readme.index("## Quickstart"):]
    curl = re.search(r"^curl -X PUT (\S+) .*\\\n\s+-d '(.*)'$", quickstart, re.M)
    assert curl is not None
    snippet = re.search(r"```python\n(.*?)```", quickstart, re.S)
    shown = re.search(r"```\n(now: .*?)```", quickstart, re.S)
    assert snippet is not None and shown is not None
    auth = {"Authorization": f"Bearer {dev.token}"}
    path = curl.group(1).removeprefix("localhost:8080")
    written = httpx.put(dev.urls[0] + path, headers=auth, content=curl.group(2), timeout=10)
    assert written.status_code == 200 and written.json()["id"] == "t1"
    code = snippet.group(1).replace("http://127.0.0.1:8080", dev.urls[0])
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TOKEN": dev.token},
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
    table = subprocess.run(
        [sys.executable, "-m", "lq", "status", "--redis-url", dev.redis_url],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert "shard-0" in table and "shard-1" in table and "gateways 2 live" in table
    assert "all 256 leased by their owners" in table


def test_lq_token_prints_a_token_that_verifies_with_the_secret(dev: Dev) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lq", "token", "--tenant", "acme", "--scope", "lq:read:tasks",
         "--ttl", "60"],
        env={**os.environ, "LQ_JWT_SECRET": dev.secret},
        capture_output=True, text=True, timeout=30, check=True,
    )
    token = out.stdout.strip()
    claims = jwt.decode(token, dev.secret, algorithms=["HS256"])
    assert claims["tenant"] == "acme" and claims["scope"] == "lq:read:tasks"
    assert 0 < claims["exp"] - time.time() <= 61
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "x" * 32, algorithms=["HS256"])
    got = httpx.get(f"{dev.urls[0]}/v1/entities/tasks/rows/t1",
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert got.status_code == 404  # accepted by the gateway; tenant acme has no such row


def test_a_child_that_dies_is_reported_and_started_again(dev: Dev) -> None:
    pid = int(dev.find(r"^shard-1\s+ready\s+pid (\d+)"))
    os.kill(pid, signal.SIGKILL)
    dev.wait_for(r"^shard-1\s+exited\s+pid \d+.*ended by SIGKILL.*starting again", timeout=10)
    dev.wait_for(r"^shard-1\s+ready\s+pid \d+.*again", timeout=30)
    new_pid = int(re.findall(r"^shard-1\s+ready\s+pid (\d+)", dev.output(), re.M)[-1])
    assert new_pid != pid and _alive(new_pid)
    dev.pids.add(new_pid)


def test_sigterm_stops_every_process_and_removes_the_redis_directory(dev: Dev) -> None:
    dev.pids |= {int(p) for p in re.findall(r"\bpid (\d+)", dev.output())}
    assert len([pid for pid in dev.pids if _alive(pid)]) == 5
    code = dev.stop()
    assert code == 0, dev.output()
    assert [pid for pid in dev.pids if _alive(pid)] == []
    assert not dev.redis_dir.exists()
    out = dev.output()
    for name in ("gateway-0", "gateway-1", "shard-0", "shard-1"):
        assert re.search(rf"^{name}\s+stopped", out, re.M), out
    # gateways stop before shards, shards before Redis
    order = [out.index(f"{n} ") for n in ("gateway-1  stopped", "shard-0    stopped",
                                          "redis      stopped")]
    assert order == sorted(order)
