"""`lq gateway`: run the HTTP gateway under uvicorn (or granian: `--server`), configured by
flags and `LQ_` env.

This entry point is the only place that reads the environment (and the public key file);
everything below receives frozen settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import uvicorn

from cluster.logfmt import emit
from cluster.settings import AuthSettings, GatewaySettings, QueryLimits, StorageSettings
from gateway import GatewayConfig, create_app
from gateway.live import LiveService
from lq._flags import add_settings_flags, settings_from
from lq._jsonlog import configure_json_logging
from lq._serving import missing, serve_granian
from storage import redact

__all__ = ["config_from", "configure", "raise_fd_limit", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, GatewaySettings, "gateway")
    add_settings_flags(parser, AuthSettings, "authentication (JWT)")
    parser.add_argument(
        "--jwt-public-key-file", help="read the PEM public key (RS256 / ES256) from this file"
    )
    add_settings_flags(parser, StorageSettings, "storage (Redis)")
    add_settings_flags(parser, QueryLimits, "query limits")


def config_from(args: argparse.Namespace, env: dict[str, str]) -> GatewayConfig:
    if getattr(args, "jwt_public_key_file", None):
        args.jwt_public_key = Path(args.jwt_public_key_file).read_text()
    return GatewayConfig(
        auth=settings_from(AuthSettings, args, env),
        gateway=settings_from(GatewaySettings, args, env),
        storage=settings_from(StorageSettings, args, env),
        query=settings_from(QueryLimits, args, env),
    )


class _Server(uvicorn.Server):
    """uvicorn, draining the live side on the first SIGTERM/SIGINT before it exits, and
    flushing the log queue before it re-raises the stop signal on its way out."""

    def __init__(
        self, config: uvicorn.Config, flush: Callable[[], None], live: LiveService | None = None
    ) -> None:
        super().__init__(config)
        self.flush = flush
        self.live = live
        self.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        live = self.live
        if live is None or self.draining or not self.started:
            super().handle_exit(sig, frame)
            return
        # Drain first (close WebSockets with 1001, end streams, remove registrations),
        # then let uvicorn stop; a second signal stops at once.
        self.draining = True
        live.request_drain(lambda: super(_Server, self).handle_exit(sig, frame))

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self.flush()


def raise_fd_limit() -> None:
    """Raise the soft limit of open files to the hard limit (one per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def run(args: argparse.Namespace) -> int:
    flush = configure_json_logging()
    # uvicorn's access lines carry whole query strings (a `?token=` or `?ticket=`); the
    # gateway's own access log (gateway.access) has the route and path, never the query
    logging.getLogger("uvicorn.access").disabled = True
    try:
        config = config_from(args, dict(os.environ))
        app = create_app(config)
    except (ValueError, OSError) as e:
        print(f"lq gateway: {e}", file=sys.stderr)
        return 2
    g = config.gateway
    emit(logging.getLogger("lq.gateway"), logging.INFO, msg="gateway starting", host=g.host,
         port=g.port, redis=redact(config.storage.redis_url))
    need = missing(g.server, g.ws_impl)
    if need is not None:
        print(f"lq gateway: {need}", file=sys.stderr)
        return 2
    raise_fd_limit()
    if g.server == "granian":
        try:
            serve_granian(app, g.host, g.port, 4096, g.max_connections,
                          app.state.live.request_drain)
        finally:
            flush()
        return 0
    ping = min(300.0, max(1.0, g.ws_ping_interval))
    server = _Server(
        uvicorn.Config(
            app,
            host=g.host,
            port=g.port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
            ws_max_size=g.ws_max_message_bytes,
            ws_ping_interval=ping,
            ws_ping_timeout=2 * ping,  # two unanswered intervals close the connection
            backlog=4096,
            ws=g.ws_impl,
            # the gateway reads neither the client's address nor the scheme, so uvicorn's
            # X-Forwarded-* rewriting would be one more layer per request for nothing
            proxy_headers=False,
        ),
        flush,
        app.state.live,
    )
    server.run()
    return 0 if server.started else 1
