"""Structured log events of a shard, always with the shard id.

Each event is one record with fields `event`, `shard` and its own; the process's
formatter (`cluster.logfmt.JsonLinesFormatter`, installed by `lq shard`) renders it as a
JSON line with `ts` and `level` first, the format every lq process logs in.
"""

from __future__ import annotations

import logging
from typing import Any

from cluster.logfmt import emit

__all__ = ["Events"]


class Events:
    def __init__(self, shard_id: str, logger: str = "lq.shard") -> None:
        self.shard_id = shard_id
        self.log = logging.getLogger(logger)

    def info(self, name: str, **fields: Any) -> None:
        emit(self.log, logging.INFO, event=name, shard=self.shard_id, **fields)

    def warning(self, name: str, **fields: Any) -> None:
        emit(self.log, logging.WARNING, event=name, shard=self.shard_id, **fields)

    def error(self, name: str, **fields: Any) -> None:
        emit(self.log, logging.ERROR, event=name, shard=self.shard_id, **fields)

    def loop_error(self, loop: str, error: Exception) -> None:
        """The `on_error` hook of `cluster.loops.guarded`."""
        self.error("loop_error", loop=loop, error=repr(error))
