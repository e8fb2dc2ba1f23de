"""`cluster.logfmt`: one JSON line per record, `ts` and `level` first, for shard events,
pre-rendered lines and plain library messages alike."""

from __future__ import annotations

import logging
import re

import orjson

from cluster.logfmt import JsonLinesFormatter, line, timestamp
from shard.runtime.events import Events

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonLinesFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _capture(name: str) -> tuple[logging.Logger, _Keep]:
    logger = logging.getLogger(name)
    keep = _Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, keep


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert timestamp(86_399.9999) == "1970-01-01T23:59:59.999Z"
    assert list(orjson.loads(line("info", {"msg": "x"}, 1.0))) == ["ts", "level", "msg"]


def test_shard_events_get_time_and_level_first() -> None:
    logger, keep = _capture("test.logfmt.shard")
    events = Events("s0", logger=logger.name)
    events.warning("lease_lost", p=7)
    events.loop_error("tail", ValueError("boom"))
    first, second = (orjson.loads(text) for text in keep.lines)
    assert list(first) == ["ts", "level", "event", "shard", "p"]
    assert STAMP.match(first["ts"])
    assert first | {"ts": None} == {"ts": None, "level": "warning", "event": "lease_lost",
                                    "shard": "s0", "p": 7}
    assert second["level"] == "error" and second["loop"] == "tail"
    assert second["error"] == "ValueError('boom')"


def test_plain_messages_are_wrapped_and_tokens_redacted_rendered_lines_pass() -> None:
    logger, keep = _capture("test.logfmt.plain")
    logger.info("GET /v1/live?token=secret&x=1 101")
    rendered = line("info", {"msg": "request", "status": 200})
    logger.info(rendered)
    wrapped = orjson.loads(keep.lines[0])
    assert wrapped["msg"] == "GET /v1/live?token=***&x=1 101"
    assert (wrapped["level"], wrapped["logger"]) == ("info", "test.logfmt.plain")
    assert keep.lines[1] == rendered
