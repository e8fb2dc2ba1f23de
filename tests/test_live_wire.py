"""The pure parts of the live gateway: the wire parser (fuzzed), the mirror (against the
shard's own matcher), the outbox's bounds and numbering, and the client's list rules.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lq_client.view import ProtocolViolation, ViewState

from cluster.query import CursorSigner, parse_query
from gateway.live import wire
from gateway.live.delivery import Phase
from gateway.live.group import Group
from gateway.live.mirror import Mirror
from gateway.live.outbox import Outbox
from gateway.live.subscription import Subscription
from shard import Change, Matcher, Row

SIGNER = CursorSigner(b"k" * 32)

# -- the parser -------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12,
)
_shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "unsubscribe", "reanchor", "ping", "auth", "x"])},
    optional={k: _json for k in ("sub", "query", "after", "limit", "t", "token", "extra")},
)


@settings(max_examples=500)
@given(raw=st.one_of(st.binary(max_size=64), st.text(max_size=64),
                     st.one_of(_json, _shaped).map(json.dumps)))
def test_the_parser_is_total(raw: str | bytes) -> None:
    try:
        msg = wire.parse(raw)
    except wire.WireError as e:
        assert e.code in ("invalid_message", "invalid_query") and str(e)
        assert e.sub is None or isinstance(e.sub, str)
        return
    assert isinstance(msg, wire.Subscribe | wire.Unsubscribe | wire.Reanchor | wire.Ping
                      | wire.Auth)
    if hasattr(msg, "sub"):
        assert isinstance(msg.sub, str) and 1 <= len(msg.sub) <= 64


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ('{"type":"subscribe","sub":"c1","query":{"entity":"t","limit":1}}',
         wire.Subscribe("c1", {"entity": "t", "limit": 1})),
        ('{"type":"unsubscribe","sub":"c1"}', wire.Unsubscribe("c1")),
        ('{"type":"reanchor","sub":"c1","after":null,"limit":50}', wire.Reanchor("c1", None, 50)),
        ('{"type":"reanchor","sub":"c1","after":"abc"}', wire.Reanchor("c1", "abc", None)),
        ('{"type":"ping","t":123}', wire.Ping(123)),
        ('{"type":"auth","token":"x.y.z"}', wire.Auth("x.y.z")),
    ],
)
def test_the_parser_reads_each_message(raw: str, want: Any) -> None:
    assert wire.parse(raw) == want


def test_composing_splices_sub_and_seq_into_shared_bytes() -> None:
    message = {"type": "delta", "op": "enter", "id": "r1", "version": 3, "row": {"a": 1},
               "from": -1, "to": 0, "cursor": "c"}
    body = wire.delta_body(message)
    out = orjson.loads(wire.compose(orjson.dumps("s1"), 7, body))
    assert out == {**message, "sub": "s1", "seq": 7}
    assert list(out)[:4] == ["type", "sub", "seq", "op"]
    assert orjson.loads(wire.batch([b"1", b"2"])) == [1, 2]
    assert wire.batch([b'{"a":1}']) == b'{"a":1}'


# -- the mirror, against the shard's matcher --------------------------------------------


def _messages(payload: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = orjson.loads(payload)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), mode=st.sampled_from(["window", "changes"]))
def test_the_mirror_snapshot_equals_the_applied_list(seed: int, mode: str) -> None:
    rnd = random.Random(seed)
    raw: dict[str, Any] = {"entity": "t", "where": {"s": "open"}, "sort": ["-p"], "mode": mode}
    raw["limit"] = rnd.randint(1, 6) if mode == "window" else 50
    query = parse_query(raw, signer=SIGNER)
    matcher = Matcher(SIGNER)
    rows = [Row(f"r{i}", i + 1, {"s": rnd.choice(["open", "done"]), "p": rnd.randint(0, 5)})
            for i in range(rnd.randint(0, 10))]
    matcher.load("a", "t", rows)
    mirror = Mirror(mode == "window", query.limit, 1 << 20, query.sort_key)
    client = ViewState(mode == "window", query.limit)
    seq = 0

    def feed(payload: bytes) -> None:
        nonlocal seq
        msgs = _messages(payload)
        mirror.apply(msgs, 10)
        for m in msgs:
            seq += 1
            client.apply({**m, "seq": seq})

    feed(matcher.subscribe("s", "a", query).payload)
    version = 100
    for _ in range(rnd.randint(1, 30)):
        version += 1
        rid = f"r{rnd.randint(0, 12)}"
        values = None if rnd.random() < 0.2 else {"s": rnd.choice(["open", "done"]),
                                                  "p": rnd.randint(0, 5)}
        for delta in matcher.apply(Change("a", "t", rid, version, values)):
            feed(delta.frame.payload)
        snapshot = mirror.snapshot()
        assert snapshot is not None
        fresh = ViewState(mode == "window", query.limit)
        for i, (_, body) in enumerate(snapshot):
            fresh.apply(orjson.loads(wire.compose(b'"s"', i + 1, body)))
        got = [(r.id, r.version, r.values) for r in fresh.current()]
        want = [(r.id, r.version, r.values) for r in client.current()]
        assert got == want if mode == "window" else sorted(got) == sorted(want)


def test_a_mirror_past_its_byte_bound_cannot_serve() -> None:
    mirror = Mirror(True, 10, 25, lambda i, v: i.encode())
    enter = {"op": "enter", "id": "a", "version": 1, "row": {}, "from": -1, "to": 0}
    mirror.apply([{"op": "reset"}, enter, {"op": "synced", "count": 1}], 20)
    assert mirror.snapshot() is not None
    mirror.apply([{**enter, "id": "b"}], 20)
    assert mirror.snapshot() is None
    mirror.apply([{"op": "leave", "id": "a", "version": 1, "from": 0, "to": -1}], 20)
    assert mirror.snapshot() is None  # stays unusable until the next reset


# -- the outbox -------------------------------------------------------------------------


def _sub(outbox: Outbox, name: str = "s", resyncs: list[str] | None = None) -> Subscription:
    query = parse_query({"entity": "t", "limit": 5}, signer=SIGNER)
    sub = Subscription(f"gw.{name}", name, "a", 0, query, outbox, 1 << 20,
                       lambda s: (resyncs if resyncs is not None else []).append(s.rid))
    sub.announce()  # as after `subscribed`: its deltas go to the outbox
    assert not sub.behind
    return sub


def _group(*ops: str) -> Group:
    msgs: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        m: dict[str, Any] = {"type": "delta", "op": op}
        if op == "enter":
            m.update(id=f"r{i}", version=1, row={}, to=0, cursor="c")
            m["from"] = -1
        if op == "synced":
            m["count"] = ops.count("enter")
        msgs.append(m)
    return Group.of(msgs, 10)


def test_overflow_drops_queued_deltas_then_catches_up_with_the_mirror() -> None:
    outbox = Outbox(4, 1 << 20)
    sub = _sub(outbox)
    sub.deliver(5, ("sh", "i"), _group("reset", "enter", "synced"))
    assert sub.phase is Phase.LIVE and len(outbox) == 3
    client = ViewState(True, 5)
    for _, _, data in outbox.take(1, 1 << 20):
        client.apply(orjson.loads(data))
    for version in range(2, 7):  # five changes to r1 (the mirror refuses a change twice)
        update = {"type": "delta", "op": "update", "id": "r1", "version": version,
                  "row": {"x": version}, "from": 0, "to": 0, "cursor": "c"}
        sub.deliver(5, ("sh", "i"), Group.of([update], 10))
        if version == 4:
            assert sub.behind and len(outbox) == 0  # dropped, none numbered
    taken = outbox.take(100, 1 << 20)  # the queue is empty: catch-up from the mirror
    taken += outbox.take(100, 1 << 20)
    for _, _, data in taken:
        client.apply(orjson.loads(data))
    assert [op for op, _, _ in taken] == ["reset", "enter", "synced"]
    assert client.seq == 4 and [r.values for r in client.current()] == [{"x": 6}]


def test_fences_drop_old_epochs_and_new_epochs_without_reset() -> None:
    outbox = Outbox(100, 1 << 20)
    sub = _sub(outbox)
    reset = _group("reset", "synced")
    assert sub.deliver(5, ("a", "1"), reset)
    assert not sub.deliver(4, ("old", "1"), reset)
    assert not sub.deliver(6, ("b", "1"), _group("enter"))
    sub.lost()
    assert not sub.deliver(5, ("a", "1"), _group("enter"))
    assert sub.deliver(6, ("b", "1"), reset) and sub.fence.source == ("b", "1")


def test_a_newer_epoch_without_reset_asks_for_a_resync_once() -> None:
    resyncs: list[str] = []
    sub = _sub(Outbox(100, 1 << 20), resyncs=resyncs)
    assert sub.deliver(5, ("a", "1"), _group("reset", "synced"))
    # The new owner's claim reset was lost: its deltas must not be applied, and one
    # resync is asked for (not one per dropped frame).
    assert not sub.deliver(6, ("b", "1"), _group("enter"))
    assert not sub.deliver(6, ("b", "1"), _group("enter"))
    assert resyncs == ["gw.s"]
    assert sub.deliver(6, ("b", "1"), _group("reset", "synced"))
    assert sub.deliver(6, ("b", "1"), _group("enter"))


def test_control_messages_are_refused_past_twice_the_bounds() -> None:
    outbox = Outbox(2, 1 << 20)
    assert all(outbox.push_control(b"{}") for _ in range(4))
    assert not outbox.push_control(b"{}")


# -- the client's rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        [{"op": "enter", "seq": 1}],
        [{"op": "reset", "seq": 2}],
        [{"op": "reset", "seq": 1}, {"op": "leave", "seq": 2, "id": "x", "from": 0, "to": -1}],
        [{"op": "reset", "seq": 1}, {"op": "synced", "seq": 2, "count": 3}],
        [{"op": "reset", "seq": 1},
         {"op": "enter", "seq": 2, "id": "a", "version": 1, "row": {}, "from": -1, "to": 0},
         {"op": "enter", "seq": 3, "id": "b", "version": 1, "row": {}, "from": -1, "to": 0}],
    ],
    ids=["no-reset-first", "seq-skips", "bad-index", "bad-count", "over-limit"],
)
def test_the_client_refuses_what_breaks_the_rules(messages: list[dict[str, Any]]) -> None:
    view = ViewState(True, 1)
    with pytest.raises(ProtocolViolation):
        for m in messages:
            view.apply(m)
