"""Loopback ports for the processes the command line starts (lq dev, benchmarks, chaos).

Invariant: `port_free` answers as a listening server would find it: it binds with
`SO_REUSEADDR`, as uvicorn and redis-server do, so a port whose last connections wait in
TIME_WAIT (after a restart with clients connected) is free and a port with a listener is
not. `free_port` is a port the kernel just handed out; another process may take it before
ours binds, which callers accept (they start on it or fail with a clear error).
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_free"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
