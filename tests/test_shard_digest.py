"""The shard's snapshot frames: the window digest on `synced` (computed here by an
implementation of the test's own) and the reset reason added per send without changing
the shared, cached frame."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from cluster.query import CursorSigner, Query, parse_query
from shard import Frame, Matcher, Row

SIGNER = CursorSigner(b"s" * 32)


def sha(pairs: list[tuple[str, int]]) -> str:
    text = "".join(f"{rid}\n{version}\n" for rid, version in pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _query(limit: int, mode: str = "window") -> Query:
    return parse_query({"entity": "tasks", "sort": ["-p"], "limit": limit, "mode": mode},
                       signer=SIGNER)


def test_synced_digest_and_reasons() -> None:
    m = Matcher(SIGNER)
    m.load("t", "tasks", [Row(f"r{i}", 10 + i, {"p": i % 4}) for i in range(7)])
    empty = Matcher(SIGNER)
    empty.load("t", "tasks", [])
    assert empty.subscribe("e", "t", _query(3)).messages[-1]["digest"] == sha([])
    frame = m.subscribe("a", "t", _query(5))
    enters = [(x["id"], x["version"]) for x in frame.messages if x["op"] == "enter"]
    assert len(enters) == 5 and frame.messages[-1]["digest"] == sha(enters)
    because = frame.because("failover")
    assert orjson.loads(because.payload) == [{**frame.messages[0], "reason": "failover"},
                                             *frame.messages[1:]]
    assert list(because.messages) == orjson.loads(because.payload)
    assert "reason" not in frame.messages[0]  # the cached frame is unchanged
    assert orjson.loads(frame.payload)[0] == {"type": "delta", "op": "reset"}
    changes = m.subscribe("c", "t", _query(5, "changes"))
    assert "digest" not in changes.messages[-1]
    with pytest.raises(ValueError):
        Frame.of([{"type": "delta", "op": "synced", "count": 0}]).because("x")
