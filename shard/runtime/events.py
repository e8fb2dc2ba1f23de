"""Structured log events of a shard: one JSON object per line, always with the shard id."""

from __future__ import annotations

import logging
from typing import Any

import orjson

__all__ = ["Events"]


class Events:
    def __init__(self, shard_id: str, logger: str = "lq.shard") -> None:
        self.shard_id = shard_id
        self.log = logging.getLogger(logger)

    def _emit(self, level: int, name: str, fields: dict[str, Any]) -> None:
        if self.log.isEnabledFor(level):
            body = {"event": name, "shard": self.shard_id, **fields}
            self.log.log(level, orjson.dumps(body, default=str).decode())

    def info(self, name: str, **fields: Any) -> None:
        self._emit(logging.INFO, name, fields)

    def warning(self, name: str, **fields: Any) -> None:
        self._emit(logging.WARNING, name, fields)

    def error(self, name: str, **fields: Any) -> None:
        self._emit(logging.ERROR, name, fields)
