"""The one log line format of every lq process: a JSON object per line, time and level first.

`{"ts": "2025-01-31T12:00:00.123Z", "level": "info", ...fields}`: `ts` is UTC with
milliseconds (ISO 8601), `level` the lower-case level name. Three ways in, one way out
(`JsonLinesFormatter`):
- structured: `emit(logger, level, event=..., **fields)` stores the fields on the record
  (attribute `FIELDS`); the formatter adds `ts` and `level` from the record itself;
- already a JSON object (a line rendered by `line(...)`, or any `{...}` message) passes
  through unchanged, so a process can render its own lines;
- anything else (a library's plain message) is wrapped as
  `{"ts", "level", "logger", "msg"}`, with a traceback when the record has one.
A `token=` query parameter in a plain message is redacted (servers log request paths).
Standard library and orjson only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["FIELDS", "JsonLinesFormatter", "emit", "line", "timestamp"]

FIELDS = "lq_fields"
"""The `LogRecord` attribute that carries structured fields (set through `extra`)."""

_TOKEN = re.compile(r"(token=)[^&\s\"']+")


def timestamp(created: float) -> str:
    """`created` (seconds since the epoch) as UTC ISO 8601 with milliseconds and `Z`."""
    whole = int(created)
    millis = min(int((created - whole) * 1000), 999)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{millis:03d}Z"


def line(level: str, fields: Mapping[str, Any], created: float | None = None) -> str:
    """One rendered line: `ts` (now unless `created` is given), `level`, then `fields`
    (non-JSON values by `str`)."""
    when = time.time() if created is None else created
    return orjson.dumps({"ts": timestamp(when), "level": level, **fields}, default=str).decode()


def emit(logger: logging.Logger, level: int, **fields: Any) -> None:
    """Log `fields` as one structured record (nothing is rendered when `level` is off).
    The record's plain message is the `event` or `msg` field, for handlers that do not
    use `JsonLinesFormatter`."""
    if logger.isEnabledFor(level):
        text = str(fields.get("event", fields.get("msg", "")))
        logger.log(level, text, extra={FIELDS: fields})


class JsonLinesFormatter(logging.Formatter):
    """Formats every record as one line of the format above."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, Mapping):
            out = dict(fields)
            if record.exc_info:
                out["traceback"] = self.formatException(record.exc_info)
            return line(level, out, record.created)
        message = record.getMessage()
        if "token=" in message:
            message = _TOKEN.sub(r"\1***", message)
        if message.startswith("{") and message.endswith("}"):
            return message
        wrapped: dict[str, Any] = {"logger": record.name, "msg": message}
        if record.exc_info:
            wrapped["traceback"] = self.formatException(record.exc_info)
        return line(level, wrapped, record.created)
