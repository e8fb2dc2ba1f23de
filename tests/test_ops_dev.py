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
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from lq._devstate import find_running
from tests.dev_process import Dev, dev_env, gone_within, run_lq
from tests.gateway_helpers import free_port
from tests.pids import alive

pytestmark = pytest.mark.slow

SCOPES = "lq:read:* lq:write:* lq:admin"

@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    running = Dev(tmp_path_factory.mktemp("dev") / "state")
    try:
        yield running
    finally:
        running.cleanup()


def _status(dev: Dev) -> dict[str, Any]:
    out = run_lq(dev.state, "status", "--json")
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
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=dev_env(dev.state),
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
    table = run_lq(dev.state, "status").stdout
    assert f"lq dev   pid {dev.proc.pid}, ready since " in table
    assert "shard-0" in table and "shard-1" in table and "gateways 2 live" in table
    assert "all 256 leased by their owners" in table
    # an explicit URL wins over the running lq dev's
    elsewhere = f"redis://127.0.0.1:{free_port()}/0"
    failed = run_lq(dev.state, "status", "--redis-url", elsewhere)
    assert failed.returncode == 1 and f"cannot read {elsewhere}" in failed.stderr
    failed = run_lq(dev.state, "status", LQ_REDIS_URL=elsewhere)
    assert failed.returncode == 1 and f"cannot read {elsewhere}" in failed.stderr


def test_lq_token_with_no_flags_signs_with_the_running_lq_devs_secret(dev: Dev) -> None:
    secret = (dev.state / "secret").read_text().strip()
    out = run_lq(dev.state, "token", "--tenant", "acme", "--scope", "lq:read:tasks", "--ttl", "60")
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
    bare = run_lq(dev.state, "token").stdout.strip()  # no flag at all: tenant dev, all data
    url = f"{dev.urls[0]}/v1/entities/notes/rows/by-bare-token"
    put = httpx.put(url, headers={"Authorization": f"Bearer {bare}"}, json={"n": 0}, timeout=10)
    assert put.status_code == 200, put.text
    got = httpx.get(url, headers={"Authorization": f"Bearer {dev.token}"}, timeout=10)
    assert got.status_code == 200 and got.json()["row"] == {"n": 0}  # the same tenant
    # the environment wins over lq dev's secret
    other = "o" * 32
    token = run_lq(dev.state, "token", LQ_JWT_SECRET=other).stdout.strip()
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
        minted = run_lq(state, "token", "--tenant", "acme").stdout.strip()
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
        assert gone_within(children, 5) == []
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
        assert gone_within(children, 5) == []
        assert not Path(record["redis_dir"]).exists()
        assert sorted(p.name for p in state.iterdir()) == ["lock", "secret"]
    finally:
        dev.cleanup()
