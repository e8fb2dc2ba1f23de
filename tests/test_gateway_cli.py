"""`lq token` and `lq gateway`: settings precedence, and a real gateway process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from cluster.settings import AuthSettings
from gateway import Authenticator
from lq.cli import build_parser, main
from lq.gateway_cmd import config_from
from tests.gateway_helpers import SECRET, free_port


def test_lq_token_prints_a_token_the_gateway_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["token", "--tenant", "acme", "--scope", "lq:read:tasks", "--secret", SECRET])
    assert code == 0
    tok = capsys.readouterr().out.strip()
    who = Authenticator(AuthSettings(jwt_secret=SECRET)).verify(tok)
    assert who.tenant == "acme" and who.scopes == frozenset({"lq:read:tasks"})


def test_lq_token_needs_a_real_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--tenant", "acme", "--secret", "short"]) == 2
    assert "32 bytes" in capsys.readouterr().err


def test_flags_over_environment_over_defaults() -> None:
    args = build_parser().parse_args(
        ["gateway", "--port", "9001", "--jwt-leeway", "5", "--no-access-log"]
    )
    env = {
        "LQ_PORT": "9000", "LQ_HOST": "0.0.0.0", "LQ_JWT_SECRET": SECRET,
        "LQ_REDIS_URL": "redis://example:6379/0", "LQ_JWT_REQUIRE_EXP": "false",
        "LQ_MAX_LIMIT": "50",
    }
    config = config_from(args, env)
    assert config.gateway.port == 9001 and config.gateway.host == "0.0.0.0"
    assert config.gateway.access_log is False
    assert config.gateway.max_body_bytes == 1024 * 1024
    assert config.auth.jwt_leeway == 5 and config.auth.jwt_require_exp is False
    assert config.storage.redis_url == "redis://example:6379/0"
    assert config.query.max_limit == 50


def test_lq_gateway_process_serves_and_logs_json(standalone_url: str) -> None:
    port = free_port()
    env = {**os.environ, "LQ_JWT_SECRET": SECRET, "LQ_REDIS_URL": standalone_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lq", "gateway", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=url, timeout=5) as http:
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "no gateway"
                time.sleep(0.05)
            tok = subprocess.run(
                [sys.executable, "-m", "lq", "token", "--tenant", "t1"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.strip()
            r = http.put(
                "/v1/entities/notes/rows/n1", json={"x": 1},
                headers={"Authorization": f"Bearer {tok}"},
            )
            assert r.status_code == 200, r.text
            assert http.get("/readyz").json()["ready"] is True
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    access = [x for x in lines if x.get("msg") == "request" and x.get("method") == "PUT"]
    assert access and access[0]["tenant"] == "t1" and access[0]["status"] == 200
    assert tok not in err
