"""The stacks an ASGI app of ours can be served by: uvicorn with one of its WebSocket
implementations, or granian (a Rust HTTP server; the `lq-cluster[granian]` extra).

Used by `lq gateway` and by the bare apps of `lq bench gateway`, so a gateway and the
floor it is compared with always run on the same stack.

Invariants:
- a stack whose packages are missing is refused before anything starts, naming the extra
  that brings them (`missing`); nothing falls back to another stack silently;
- granian runs embedded in this process's asyncio loop (one process, one loop, like
  uvicorn), so the memory and the pid measured are the app's; the first SIGTERM/SIGINT
  calls `on_stop(done)` (the gateway's drain) and the server stops when `done` is
  called; a second signal stops it at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
from collections.abc import Callable
from typing import Any

from cluster.settings import SERVERS, WS_IMPLS

__all__ = ["STACKS", "missing", "serve_granian", "split_stack"]

STACKS = (*WS_IMPLS, "granian")
"""Stack names: uvicorn's WebSocket implementations, then granian."""

_EXTRAS = ("wsproto", "granian")  # stacks whose package (of that name) is an extra


def split_stack(stack: str) -> tuple[str, str]:
    """(server, uvicorn ws implementation) of a stack name; ValueError if unknown."""
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}: choose from {', '.join(STACKS)}")
    if stack in SERVERS and stack != "uvicorn":
        return stack, WS_IMPLS[0]
    return "uvicorn", stack


def missing(server: str, ws_impl: str) -> str | None:
    """What to install for this stack, or None when it can run here."""
    name = server if server != "uvicorn" else ws_impl
    if name in _EXTRAS and importlib.util.find_spec(name) is None:
        return f"the {name} stack needs the '{name}' package: pip install 'lq-cluster[{name}]'"
    return None


def serve_granian(app: Any, host: str, port: int, backlog: int, max_connections: int,
                  on_stop: Callable[[Callable[[], None]], None] | None = None) -> None:
    """Serve `app` (ASGI, with its lifespan) under embedded granian until a signal."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    logging.getLogger("_granian").setLevel(logging.WARNING)  # "embedded is experimental"

    class _Server(Server):
        draining = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            stop = super().signal_handler_interrupt
            if on_stop is None or self.draining:
                stop(*args, **kwargs)  # type: ignore[no-untyped-call]
                return
            self.draining = True
            on_stop(lambda: stop())  # type: ignore[no-untyped-call]

    server = _Server(app, address=host, port=port, interface=Interfaces.ASGI,
                     websockets=True, backlog=backlog, backpressure=max_connections,
                     log_enabled=False)

    async def main() -> None:
        # embedded granian installs no signal handlers of its own
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.signal_handler_interrupt)
        await server.serve()

    asyncio.run(main())
