"""The reading of the stack (gateway/live/backlog.py), over a real loopback TCP
connection whose peer stops reading: a send is not followed by a reading; `Backlog.held`
reads the stack again only where it can hold bytes (a frame being written, frames sent
since the last reading, or bytes at it), and what it says equals a fresh reading at
every step; `totals` adds up the same figures; the outbox refuses a group for the
stack's bytes only on a fresh reading, and admits one once the peer has drained even
though nothing was sent or read since."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from gateway.live.backlog import Backlog, totals
from gateway.live.outbox import Outbox
from gateway.live.stack import Stack


class Sub:
    """The least of an `outbox.Queued`."""

    sub_json = b'"s"'

    def __init__(self) -> None:
        self.queued = 0
        self.behind = False

    def enqueued(self, count: int) -> None:
        self.queued += count

    def numbered(self) -> int:
        self.queued -= 1
        return 1

    def unqueued(self) -> None:
        self.queued = 0

    def fell_behind(self) -> bool:
        was, self.behind = self.behind, True
        return not was

    def caught_up(self) -> list[tuple[str, bytes]] | None:
        return None


class CountingStack(Stack):
    """A real `Stack` that counts its readings."""

    __slots__ = ("reads",)

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.reads = 0

    def read(self) -> tuple[int, int]:
        self.reads += 1
        return super().read()


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    """A client transport and the server's plain socket, which reads only when told."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, "127.0.0.1", port)
        peer, _ = listener.accept()  # the kernel has completed the handshake
    assert isinstance(transport, asyncio.Transport)
    return transport, peer


async def test_held_reads_the_stack_only_where_it_can_hold_bytes() -> None:
    transport, peer = await _pair()
    try:
        stack = CountingStack(transport)
        outbox = Outbox(1000, 1 << 20)
        backlog = Backlog(outbox, stack)

        assert backlog.held().total == 0  # nothing sent: nothing to read
        assert stack.reads == 0

        payload = b"x" * (8 << 20)  # more than the socket buffers take: the peer reads nothing
        backlog.sending(len(payload))
        assert backlog.held().writing == len(payload)  # writing: read
        assert stack.reads == 1
        transport.write(payload)
        backlog.sent()
        after_send = stack.reads
        assert after_send == 1  # the send itself reads nothing
        assert outbox.below == len(payload)  # the bound counts the whole frame meanwhile
        held = backlog.held()
        assert stack.reads == after_send + 1  # bytes at the last reading: read again
        assert held.transport > 0 and held.kernel > 0
        assert held == backlog.refresh()
        assert totals([backlog])["stack_bytes"] == held.below

        sub = Sub()
        outbox.below = held.below  # as the last reading left it
        refused_at = stack.reads
        assert not outbox.push_deltas(sub, ["update"], [b"{}"])  # the stack is full
        assert stack.reads == refused_at + 1  # refused on a fresh reading
        assert sub.behind

        peer.setblocking(False)
        got = 0
        for _ in range(2000):  # the peer drains everything
            try:
                got += len(peer.recv(1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0.005)
            if got == len(payload):
                break
        assert got == len(payload)
        for _ in range(200):  # the acknowledgments reach the sender
            if backlog.refresh().below == 0:
                break
            await asyncio.sleep(0.005)
        assert backlog.refresh().below == 0
        reads = stack.reads
        assert backlog.held().total == 0  # read empty, nothing sent since: not read
        assert totals([backlog, backlog])["queued_bytes"] == 0
        assert stack.reads == reads

        sub.behind = False
        transport.write(b"y" * 100)  # a send counted in full until the next reading
        backlog.sending(100)
        backlog.sent()
        outbox.below = outbox.max_bytes  # as stale as it can be
        assert outbox.push_deltas(sub, ["update"], [b"{}"])  # read again: room
        assert outbox.below < outbox.max_bytes
    finally:
        transport.close()
        peer.close()
