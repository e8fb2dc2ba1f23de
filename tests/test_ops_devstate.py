"""`lq dev`'s checks before anything starts and its state directory, without starting
one: the port check (TIME_WAIT is free, a listener is not), the private, locked state
directory, what a killed `lq dev` left, where the directory is, and `lq token`'s
messages."""

from __future__ import annotations

import json
import re
import socket
import stat
import time
from pathlib import Path

import pytest

from lq._devstate import DevStateError, Owner, find_running, state_dir
from lq._net import port_free
from lq.cli import main
from tests.dev_process import bind_free


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
    while bind_free(port):  # a plain bind, as the old check did, trips on TIME_WAIT ...
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
