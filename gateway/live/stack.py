"""What the stack under the app holds for one WebSocket connection, read honestly.

Below our outbox, the bytes of a frame wait in two places the app can see:
- the asyncio (or uvloop) transport's write buffer: what the kernel refused so far
  (`transport.get_write_buffer_size()`); uvicorn's WebSocket protocols stop the app's
  `send` at the transport's high-water mark, so it holds at most that mark plus one frame;
- the kernel's send queue: bytes written to the socket and not yet acknowledged by the
  peer (`ioctl(SIOCOUTQ)`, Linux), up to the socket's send buffer (autotuned up to
  `net.ipv4.tcp_wmem`'s maximum).
uvicorn's WebSocket implementations (`websockets-sansio`, the default; `websockets`;
`wsproto`) encode a frame and write it to the transport at once, keeping no buffer of
their own beyond a compressor's fixed state; so these two readings, plus the frame the
app's writer holds while its `send` waits, are everything queued for the connection.

Invariants:
- the transport is found from the server's own ASGI `send` (a bound method of the
  protocol object, which has `transport`), taken by `gateway.front.Front`, the outermost
  app layer, before anything wraps `send`; under a server where it cannot be found (not
  uvicorn), `Stack` is absent and only the outbox is counted (docs/operations.md says so);
- reading never raises and never blocks: a socket that is gone reads as 0;
- nothing here writes to the connection.
"""

from __future__ import annotations

import array
import fcntl
import termios
from typing import Any, Protocol, cast

from starlette.types import Scope, Send

__all__ = ["SEND_KEY", "TRANSPORT_KEY", "Stack", "transport_of"]

TRANSPORT_KEY = "lq.transport"
"""The scope key under which `Front` leaves the connection's transport (or None)."""
SEND_KEY = "lq.send"
"""The scope key under which `Front` leaves the server's own ASGI `send`: the writer
sends its data frames through it, past the app's wrappers of `send` (starlette's
`WebSocket.send` state checks and its exception middleware's `sender`), which act on
accept, close and HTTP responses only; accept and close still go through starlette."""
_OUTQ = array.array("i", [0])  # the ioctl's answer; one for all (read synchronously)


class _Transport(Protocol):
    def get_write_buffer_size(self) -> int: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def is_closing(self) -> bool: ...


def transport_of(send: Send) -> _Transport | None:
    """The transport behind the server's own ASGI `send`, or None (not uvicorn)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    needed = ("get_write_buffer_size", "get_extra_info", "is_closing")
    if all(callable(getattr(transport, name, None)) for name in needed):
        return cast(_Transport, transport)
    return None


class Stack:
    """The transport's buffer and the kernel's send queue of one connection."""

    __slots__ = ("fd", "transport")

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        fileno = getattr(sock, "fileno", None)
        self.fd = fileno() if callable(fileno) else -1

    @classmethod
    def of(cls, scope: Scope) -> Stack | None:
        """The stack of a scope that `Front` saw, or None."""
        transport = scope.get(TRANSPORT_KEY)
        return None if transport is None else cls(transport)

    def read(self) -> tuple[int, int]:
        """(bytes in the transport's write buffer: the kernel refused them so far; bytes
        in the socket's send queue, unsent or unacknowledged), each 0 when unknown. The
        kernel's is not read once the transport is closing (its fd may soon name
        another socket). One call, as lean as it can be: the gauges read thousands."""
        transport = self.transport
        try:
            buffered = int(transport.get_write_buffer_size())
        except Exception:
            buffered = 0
        try:
            if self.fd < 0 or transport.is_closing():
                return buffered, 0
        except Exception:
            return buffered, 0
        try:
            fcntl.ioctl(self.fd, termios.TIOCOUTQ, _OUTQ)  # == SIOCOUTQ for TCP
        except OSError:
            self.fd = -1  # closed: nothing is queued any more
            return buffered, 0
        return buffered, max(0, _OUTQ[0])
