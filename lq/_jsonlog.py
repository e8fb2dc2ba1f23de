"""JSON-lines logging for the production processes: one JSON object per line on stderr.

Lines are formatted by `cluster.logfmt.JsonLinesFormatter` (the one format of every lq
process: `ts` and `level` first): structured records (the shard's events) are rendered,
records whose message already is a JSON object (the gateway's access lines) pass through,
anything else (uvicorn's own messages) is wrapped with its level and logger name, with
any `token=` query parameter redacted (uvicorn logs WebSocket paths with their query).
Writing happens on a listener thread, so the event loop never waits for stderr: the
queue between them is bounded (10,000 records) and, when full, a record is dropped
and counted rather than blocking a request. The listener is flushed at exit.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Callable

from cluster.logfmt import JsonLinesFormatter

__all__ = ["configure_json_logging"]

_QUEUE_SIZE = 10_000


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Enqueue without blocking; a full queue drops the record (counted in `dropped`)."""

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The listener formats; the event loop only enqueues (no copy, no formatting here).
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            type(self).dropped += 1


def configure_json_logging(level: int = logging.INFO) -> Callable[[], None]:
    """Send every record to stderr as a JSON line; returns `flush`, which writes what is
    queued and stops the writer (also run at exit; safe to call more than once)."""
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(JsonLinesFormatter())
    records: queue.Queue[logging.LogRecord] = queue.Queue(_QUEUE_SIZE)
    listener = logging.handlers.QueueListener(records, out)
    listener.start()
    stopped = threading.Lock()

    def flush() -> None:
        if stopped.acquire(blocking=False):
            listener.stop()

    atexit.register(flush)
    root = logging.getLogger()
    root.handlers[:] = [_DroppingQueueHandler(records)]
    root.setLevel(level)
    return flush
