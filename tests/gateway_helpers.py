"""Helpers for the gateway tests: a real uvicorn server on loopback in a thread, tokens.

The server runs the real app (lifespan included) on 127.0.0.1 on a free port, in its
own thread and event loop; `stop()` asks uvicorn to exit and joins the thread, so the
app's Redis client is closed by its lifespan before the test ends.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import uvicorn

from cluster.settings import AuthSettings, GatewaySettings, StorageSettings
from gateway import GatewayConfig, create_app

SECRET = "test-secret-" + "0123456789abcdef" * 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(redis_url: str, **gateway: Any) -> GatewayConfig:
    """No delivery canary unless asked (`canary_interval`): tests count subscriptions,
    registrations and rows, and the canary adds its own."""
    gateway.setdefault("canary_interval", 0.0)
    return GatewayConfig(
        auth=AuthSettings(jwt_secret=SECRET),
        gateway=GatewaySettings(**gateway),
        storage=StorageSettings(redis_url=redis_url),
    )


class ThreadServer:
    """uvicorn serving one app in a background thread."""

    def __init__(self, config: GatewayConfig) -> None:
        self.app = create_app(config)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_config=None,
                access_log=False, lifespan="on", loop="asyncio",
            )
        )
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as e:  # reported by start()/stop()
            self.error = e

    def start(self, timeout: float = 10.0) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {self.error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        if self.error is not None:
            raise self.error


@contextmanager
def running(config: GatewayConfig) -> Iterator[ThreadServer]:
    server = ThreadServer(config).start()
    try:
        yield server
    finally:
        server.stop()


def token(
    tenant: object = "acme",
    scope: str | list[str] | None = "lq:read:* lq:write:*",
    *,
    ttl: float | None = 3600,  # module-level tokens must outlive the whole suite
    key: Any = SECRET,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iat": now, **claims}
    if tenant is not None:
        body["tenant"] = tenant
    if scope is not None:
        body["scope"] = scope
    if ttl is not None:
        body["exp"] = now + ttl
    return jwt.encode(body, key, algorithm=algorithm)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}
