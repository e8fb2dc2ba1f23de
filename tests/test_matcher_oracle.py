"""The matcher against a fresh query: the main proof of issue 4.

A random collection receives a random sequence of inserts, updates, deletes, re-creates,
duplicate and stale redeliveries, while random subscriptions (both modes, multi-key
sorts, cursors, filters with `$or`/`$not`) come, go and reanchor. Every subscription has
a simulated client that applies its messages by PROTOCOL.md section 3 and checks each
index it is given. After every step each client's list must equal the plain-Python
oracle's answer (lq/chaos/oracle.py, independent of `cluster.query`), never exceed `limit`,
never see a version go backwards, and rule 5 must hold for the step's messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.query import CursorSigner, Query, parse_query
from lq.chaos.oracle import oracle_query
from shard import Change, Frame, Matcher, MatcherSettings, Row, ViewDelta

TENANT, ENTITY = "t", "items"
SIGNER = CursorSigner(b"k" * 32)
IDS = ("a", "b", "c", "aa", "ab", "B", "é", "z1", "z10", "z2", "m", "q")
COLUMNS = ("n", "s", "g", "o.x")
SCALARS: tuple[Any, ...] = (None, True, False, 0, 1, 1.0, -2, 2.5, 2**53 + 1, float(2**53),
                            "", "1", "a", "ab", "b", "é")

# -- rows -------------------------------------------------------------------------------

scalar = st.sampled_from(SCALARS)
nested = st.one_of(
    scalar,
    st.lists(scalar, max_size=2),
    st.fixed_dictionaries({}, optional={"x": scalar, "y": scalar}),
)
row_values = st.fixed_dictionaries(
    {},
    optional={
        "n": st.one_of(scalar, st.lists(scalar, max_size=2)),
        "s": st.sampled_from(("", "a", "ab", "abc", "b", "ba", "é", None)),
        "g": st.integers(0, 3),
        "o": nested,
    },
)

# -- queries ----------------------------------------------------------------------------


def _condition(column: str) -> st.SearchStrategy[Any]:
    ordered = st.one_of(st.integers(-2, 3), st.sampled_from((1.0, 2.5, "a", "ab", "b", True)))
    return st.one_of(
        scalar,
        st.builds(lambda v: {"$eq": v}, scalar),
        st.builds(lambda v: {"$ne": v}, scalar),
        st.builds(lambda op, v: {op: v}, st.sampled_from(("$gt", "$gte", "$lt", "$lte")), ordered),
        st.builds(lambda lo, hi: {"$gte": lo, "$lt": hi}, st.integers(-2, 2), st.integers(0, 4)),
        st.builds(lambda vs: {"$in": vs}, st.lists(scalar, max_size=3)),
        st.builds(lambda vs: {"$nin": vs}, st.lists(scalar, max_size=2)),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
        st.builds(lambda p: {"$prefix": p}, st.sampled_from(("", "a", "ab", "b"))),
        st.builds(lambda v: {"$contains": v}, scalar),
        st.builds(lambda v: {"$not": {"$gt": v}}, st.integers(-1, 2)),
    )


leaf = st.sampled_from(COLUMNS).flatmap(lambda c: _condition(c).map(lambda cond: {c: cond}))
filters = st.recursive(
    st.one_of(st.just({}), leaf, st.lists(leaf, min_size=2, max_size=3).map(
        lambda parts: {k: v for p in parts for k, v in p.items()})),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
        st.lists(inner, min_size=1, max_size=2).map(lambda fs: {"$and": fs}),
        st.lists(inner, min_size=1, max_size=2).map(lambda fs: {"$nor": fs}),
        inner.map(lambda f: {"$not": f}),
        st.tuples(leaf, inner).map(lambda p: {"$and": [p[0], p[1]]}),
    ),
    max_leaves=4,
)
# Filters whose top level requires given values: views filed under points, whose rows
# are gathered from a hash index instead of a walk.
eq_leaf = st.sampled_from(COLUMNS).flatmap(
    lambda c: st.one_of(scalar, st.lists(scalar, max_size=3).map(lambda vs: {"$in": vs})).map(
        lambda cond: {c: cond}
    )
)
eq_filters = st.tuples(eq_leaf, st.one_of(st.just({}), leaf, filters)).map(
    lambda parts: {"$and": [parts[0], parts[1]]}
)
sorts = st.lists(
    st.tuples(st.sampled_from(("n", "s", "g", "o.x", "o")), st.booleans()),
    max_size=3,
    unique_by=lambda t: t[0],
).map(lambda cols: [("-" if desc else "") + name for name, desc in cols])
limits = st.one_of(st.integers(1, 4), st.integers(1, 20))
anchors = st.one_of(st.none(), st.tuples(st.sampled_from(IDS), row_values))


@dataclass(frozen=True)
class Spec:
    """A query as drawn: its JSON and the (id, values) its cursor is made from."""

    where: dict[str, Any]
    sort: list[str]
    limit: int
    mode: str
    anchor: tuple[str, dict[str, Any]] | None

    def json(self) -> dict[str, Any]:
        return {"entity": ENTITY, "where": self.where, "sort": self.sort, "limit": self.limit,
                "mode": self.mode}

    def parse(self) -> Query:
        obj = self.json()
        if self.anchor is not None:
            plain = parse_query(obj, signer=SIGNER)
            key = plain.sort_key(*self.anchor)
            obj["after"] = SIGNER.make(ENTITY, plain.sort_spec, key)
        return parse_query(obj, signer=SIGNER)


specs = st.builds(
    lambda where, sort, limit, mode, anchor: Spec(
        where, sort, limit, mode, anchor if mode == "window" else None
    ),
    st.one_of(filters, eq_filters), sorts, limits, st.sampled_from(("window", "window", "changes")),
    anchors,
)

# -- the simulated client ---------------------------------------------------------------

Entry = tuple[str, int, dict[str, Any]]
WINDOW_SHAPES: tuple[list[str], ...] = (
    [], ["update"], ["move"], ["leave"], ["enter"], ["leave", "enter"]
)


@dataclass
class Client:
    """One subscription's client: applies messages by PROTOCOL.md section 3, checking them."""

    spec: Spec
    query: Query
    items: list[Entry] = field(default_factory=list)
    truncated: bool = False
    seen: dict[str, int] = field(default_factory=dict)

    @property
    def window(self) -> bool:
        return self.spec.mode == "window"

    def ids(self) -> list[str]:
        return [e[0] for e in self.items]

    def _version(self, msg: dict[str, Any]) -> None:
        rid, version = msg["id"], msg["version"]
        assert version >= self.seen.get(rid, version), f"version of {rid} went backwards"
        self.seen[rid] = version

    def _cursor(self, msg: dict[str, Any]) -> None:
        position = SIGNER.open(msg["cursor"], ENTITY, self.query.sort_spec, 1024)
        assert position == self.query.sort_key(msg["id"], msg["row"])

    def apply_snapshot(self, frame: Frame) -> None:
        msgs = orjson.loads(frame.payload)
        assert msgs[0]["op"] == "reset" and msgs[-1]["op"] == "synced"
        body = {"enter"} if self.window else {"match"}
        assert all(msg["op"] in body for msg in msgs[1:-1])
        self.truncated = False
        for msg in msgs:
            self.apply(msg)

    def apply(self, msg: dict[str, Any]) -> None:
        assert msg["type"] == "delta" and "sub" not in msg and "seq" not in msg
        op = msg["op"]
        if op == "reset":
            self.items = []
            return
        if op == "synced":
            assert msg["count"] == len(self.items)
            if not self.window:
                self.truncated = msg["truncated"]
            return
        self._version(msg)
        if self.window:
            self._window_op(op, msg)
        else:
            self._changes_op(op, msg)

    def _window_op(self, op: str, msg: dict[str, Any]) -> None:
        items, rid = self.items, msg["id"]
        src, dst = msg["from"], msg["to"]
        if op == "leave":
            assert dst == -1 and items[src][0] == rid
            del items[src]
            return
        self._cursor(msg)
        entry = (rid, msg["version"], msg["row"])
        if op == "enter":
            assert src == -1 and rid not in self.ids() and 0 <= dst <= len(items)
            items.insert(dst, entry)
        elif op == "update":
            assert src == dst and items[src][0] == rid
            items[src] = entry
        else:
            assert op == "move" and src != dst and items[src][0] == rid
            del items[src]
            assert 0 <= dst <= len(items)
            items.insert(dst, entry)
        assert len(items) <= self.spec.limit

    def _changes_op(self, op: str, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        at = {e[0]: i for i, e in enumerate(self.items)}.get(rid)
        exact = not self.truncated
        if op == "unmatch":
            assert at is not None or not exact
            if at is not None:
                del self.items[at]
            return
        assert op in ("match", "update")
        assert (at is None) == (op == "match") or not exact
        entry = (rid, msg["version"], msg["row"])
        if at is None:
            self.items.append(entry)
        else:
            self.items[at] = entry

    def expect(self, store: dict[str, tuple[int, dict[str, Any]]]) -> None:
        """The client's list equals a fresh query over `store`."""
        rows = [(rid, values) for rid, (_, values) in store.items()]
        if self.window:
            want = oracle_query(rows, self.spec.json(), after=self.spec.anchor)
            assert self.ids() == want
        else:
            everything = oracle_query(rows, {**self.spec.json(), "limit": None})
            if self.truncated:
                # Rows never sent are missing; every row it holds still matches, as is.
                assert set(self.ids()) <= set(everything)
            else:
                assert sorted(self.ids()) == sorted(everything)
        for rid, version, values in self.items:
            assert (version, values) == store[rid]


# -- the scenario -----------------------------------------------------------------------

ops = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(IDS), row_values),
    st.tuples(st.just("put"), st.sampled_from(IDS), row_values),
    st.tuples(st.just("put"), st.sampled_from(IDS), row_values),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("stale"), st.integers(0, 1000)),
    st.tuples(st.just("dup")),
    st.tuples(st.just("subscribe"), st.integers(0, 3)),
    st.tuples(st.just("fresh"), specs),
    st.tuples(st.just("reanchor"), st.integers(0, 7), limits, anchors),
    st.tuples(st.just("unsubscribe"), st.integers(0, 7)),
)


class Scenario:
    def __init__(
        self, initial: dict[str, dict[str, Any]], queries: list[Spec], spare: int | None
    ) -> None:
        tuning = MatcherSettings() if spare is None else MatcherSettings(
            max_dead=3, min_spare=spare, max_spare=spare, snapshot_cache=1
        )
        self.matcher = Matcher(SIGNER, settings=tuning)
        self.store: dict[str, tuple[int, dict[str, Any]]] = {}
        self.history: list[Change] = []
        self.counter = 0
        for rid, values in initial.items():
            self.store[rid] = (self.next_version(), values)
        self.matcher.load(TENANT, ENTITY, [Row(r, v, vals) for r, (v, vals) in self.store.items()])
        self.queries = queries
        self.clients: dict[str, Client] = {}
        self.made = 0

    def next_version(self) -> int:
        self.counter += 1
        return self.counter

    def subscribe(self, spec: Spec) -> None:
        self.made += 1
        sub_id = f"gw{self.made % 2}.{self.made}"
        client = Client(spec, spec.parse())
        client.apply_snapshot(self.matcher.subscribe(sub_id, TENANT, client.query, sub_id[:3]))
        self.clients[sub_id] = client

    def pick(self, i: int) -> str | None:
        subs = sorted(self.clients)
        return subs[i % len(subs)] if subs else None

    def step(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind in ("put", "delete"):
            self.write(op)
        elif kind in ("stale", "dup") and self.history:
            old = self.history[-1] if kind == "dup" else self.history[op[1] % len(self.history)]
            assert self.matcher.apply(old) == [], "a redelivered change sent something"
        elif kind == "subscribe":
            self.subscribe(self.queries[op[1] % len(self.queries)])
        elif kind == "fresh":
            self.subscribe(op[1])  # a view made mid-stream: its indexes must be current
        elif kind == "reanchor":
            self.reanchor(op)
        elif kind == "unsubscribe" and (sub_id := self.pick(op[1])) is not None:
            assert self.matcher.unsubscribe(sub_id)
            del self.clients[sub_id]

    def reanchor(self, op: tuple[Any, ...]) -> None:
        sub_id = self.pick(op[1])
        if sub_id is None or self.clients[sub_id].spec.mode != "window":
            return
        old = self.clients[sub_id]
        spec = Spec(old.spec.where, old.spec.sort, op[2], "window", op[3])
        client = Client(spec, spec.parse(), seen=old.seen)
        client.apply_snapshot(self.matcher.reanchor(sub_id, client.query))
        self.clients[sub_id] = client

    def write(self, op: tuple[Any, ...]) -> None:
        rid = op[1]
        if op[0] == "delete":
            if rid not in self.store:
                return  # the store refuses it: no event
            version, values = self.next_version(), None
            del self.store[rid]
        else:
            version, values = self.next_version(), op[2]
            self.store[rid] = (version, values)
        change = Change(TENANT, ENTITY, rid, version, values)
        self.history.append(change)
        self.deliver(self.matcher.apply(change))

    def deliver(self, deltas: list[ViewDelta]) -> None:
        got: dict[str, bytes] = {}
        for delta in deltas:
            for route, ids in delta.routes.items():
                for sub_id in ids:
                    assert sub_id not in got, "two frames for one subscription in one change"
                    assert sub_id[:3] == route
                    got[sub_id] = delta.frame.payload
        for sub_id, payload in got.items():
            client = self.clients[sub_id]
            msgs = orjson.loads(payload)
            shape = [msg["op"] for msg in msgs]
            if client.window:
                assert shape in WINDOW_SHAPES, shape
                # A row that stays in the window moves; leave + enter is two rows.
                assert len(msgs) < 2 or msgs[0]["id"] != msgs[1]["id"]
            else:
                assert len(msgs) == 1
            for msg in msgs:
                client.apply(msg)

    def check(self) -> None:
        coll = self.matcher.collection(TENANT, ENTITY)
        assert coll is not None
        coll.verify()
        by_shape: dict[bytes, list[Entry]] = {}
        for sub_id, client in self.clients.items():
            client.expect(self.store)
            assert len(client.items) <= client.spec.limit or not client.window
            shape = client.query.shape
            assert self.matcher.view_of(sub_id).query.shape == shape
            if client.truncated:
                continue  # a later subscriber's snapshot is cut at `limit`, by design
            items = client.items if client.window else sorted(client.items)
            if shape in by_shape:
                assert by_shape[shape] == items, "two subscriptions of one view differ"
            by_shape[shape] = items
        views = {id(self.matcher.view_of(s)) for s in self.clients}
        assert len(views) == len({c.query.shape for c in self.clients.values()})


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    initial=st.dictionaries(st.sampled_from(IDS), row_values, max_size=10),
    queries=st.lists(specs, min_size=1, max_size=4),
    steps=st.lists(ops, max_size=40),
    spare=st.sampled_from((None, 0, 1, 2)),
)
def test_deltas_equal_a_fresh_query(
    initial: dict[str, dict[str, Any]],
    queries: list[Spec],
    steps: list[tuple[Any, ...]],
    spare: int | None,
) -> None:
    """`spare` None: the default settings; else that many spare rows per window and a
    tiny memory of deletes, so refills and the raised floor are exercised too."""
    scenario = Scenario(initial, queries, spare)
    for spec in queries:
        scenario.subscribe(spec)
    scenario.subscribe(queries[0])  # a second subscription of one shape shares its view
    scenario.check()
    for op in steps:
        scenario.step(op)
        scenario.check()
