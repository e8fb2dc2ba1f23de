"""`lq bench matcher`: the in-memory matcher on one large collection under random updates.

Every run builds a fresh `Matcher`, loads the same rows, subscribes, then applies the
same pre-made stream of changes (versions growing as the store hands them out); only
`apply` is timed, including the one-time JSON encoding of each view's messages, and in
process CPU time (the matcher is single-threaded and CPU-bound; on a shared machine
wall time mostly measures the neighbours). As in the shard runtime
(`shard/runtime/heap.py`), the loaded rows are frozen out of full GC passes. The
naive baseline re-runs every distinct query over all rows after each change and diffs
the result with the previous one; it is far too slow to run over every shape, so its
time per query is measured on a sample and multiplied by the number of shapes.
Memory is measured with tracemalloc in a separate pass (it slows everything down).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import random
import time
import tracemalloc
from typing import Any

from cluster.query import CursorSigner, Query, parse_query
from lq.bench._table import Row as TableRow
from lq.bench._table import median_of, print_table, quantile
from shard import Change, Matcher, Row, plan_for
from shard.runtime.heap import Heap

__all__ = ["configure", "run"]

T, E = "bench", "tasks"
SIGNER = CursorSigner(b"bench-cursor-key-0123456789")
_STATUSES = ("open", "doing", "done", "blocked", "review")
ONE_SHAPE: dict[str, Any] = {
    "entity": E, "where": {"status": "open"}, "sort": ["-prio", "ts"], "limit": 50,
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (default 3)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the collection")
    parser.add_argument("--changes", type=int, default=20_000, help="changes per timed run")
    parser.add_argument("--subs", type=int, default=10_000, help="subscriptions in (2), (3)")
    parser.add_argument("--shapes", type=int, default=1_000, help="distinct shapes in (2)")
    parser.add_argument("--naive-changes", type=int, default=3, help="changes for (4)")
    parser.add_argument("--naive-queries", type=int, default=20, help="queries sampled in (4)")
    parser.add_argument("--seed", type=int, default=7)


def _values(rng: random.Random, ts: int) -> dict[str, Any]:
    return {
        "cat": f"c{rng.randrange(100):02d}",
        "status": rng.choice(_STATUSES),
        "owner": f"u{rng.randrange(1000):03d}",
        "prio": rng.randrange(10),
        "price": rng.randrange(10_000),
        "ts": ts,
        "title": f"task {ts}",
    }


def _data(args: argparse.Namespace, touch: bool) -> tuple[list[Row], list[Change]]:
    """The initial rows and a stream of updates to them: one or two random fields each;
    with `touch`, every update also sets `ts` to the newest value (an updated_at)."""
    rng = random.Random(args.seed)
    rows = [Row(f"r{i:06d}", i + 1, _values(rng, i)) for i in range(args.rows)]
    current = {r.id: r.values for r in rows}
    ids = list(current)
    version = ts = args.rows + 1
    changes = []
    fields = ("prio", "price", "status", "cat") + (() if touch else ("ts",))
    for _ in range(args.changes):
        rid = rng.choice(ids)
        values = dict(current[rid], ts=ts) if touch else dict(current[rid])
        for field in rng.sample(fields, rng.choice((1, 1, 2))):
            fresh = _values(rng, ts)[field]
            if field == "price":  # prices drift, so rows move within price windows
                fresh = max(0, values["price"] + fresh // 20 - 250)
            values[field] = fresh
        current[rid] = values
        changes.append(Change(T, E, rid, version, values))
        version += 1
        ts += 1
    return rows, changes


def _shapes(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """`n` distinct queries mixing equality, `$in` and range filters over three sorts."""
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        kind = rng.randrange(10)
        cat = f"c{rng.randrange(100):02d}"
        if kind < 3:
            q = {"where": {"cat": cat, "prio": {"$gte": rng.randrange(8)}}, "sort": ["-ts"],
                 "limit": 20}
        elif kind < 6:
            owners = sorted(f"u{rng.randrange(1000):03d}" for _ in range(3))
            q = {"where": {"owner": {"$in": owners}}, "sort": ["-prio", "ts"], "limit": 50}
        elif kind < 8:
            lo = rng.randrange(0, 9_900, 10)
            q = {"where": {"price": {"$gte": lo, "$lt": lo + 100}, "status": {"$ne": "done"}},
                 "sort": ["price"], "limit": 20}
        elif kind < 9:
            statuses = sorted(rng.sample(_STATUSES, 2))
            q = {"where": {"cat": cat, "status": {"$in": statuses}}, "mode": "changes",
                 "limit": 50}
        else:
            q = {"where": {"cat": cat, "status": "open"}, "sort": ["-ts"], "limit": 10}
        q["entity"] = E
        out[repr(q)] = q
    return list(out.values())


def _parse(obj: dict[str, Any]) -> Query:
    return parse_query(obj, signer=SIGNER)


def _subscribe(m: Matcher, queries: list[Query], subs: int) -> None:
    for i in range(subs):
        m.subscribe(f"gw{i % 4}.{i}", T, queries[i % len(queries)], route=f"gw{i % 4}")


def _timed(rows: list[Row], changes: list[Change], queries: list[Query], subs: int,
           stats: dict[str, list[float]]) -> float:
    """One run: load, subscribe, apply every change; changes/s (stats: deltas, latencies)."""
    m = Matcher(SIGNER)
    m.load(T, E, rows)
    gc.collect()
    heap = Heap()  # what the shard runtime does after a load: rows out of full GC passes
    heap.loaded()
    _subscribe(m, queries, subs)
    apply, cpu, wall = m.apply, time.process_time, time.perf_counter
    deltas = deliveries = 0
    lat: list[float] = []
    start = cpu()
    for change in changes:
        t0 = wall()
        out = apply(change)
        lat.append(wall() - t0)
        deltas += len(out)
        for delta in out:
            for ids in delta.routes.values():
                deliveries += len(ids)
    elapsed = cpu() - start
    heap.released()
    stats.setdefault("deltas", []).append(deltas / elapsed)
    stats.setdefault("deliveries", []).append(deliveries / elapsed)
    stats.setdefault("p99", []).append(quantile(lat, 0.99) * 1e6)
    return len(changes) / elapsed


def _naive(rows: list[Row], changes: list[Change], queries: list[Query], sample: int,
           shapes: int) -> float:
    """Changes/s of re-running `shapes` queries per change, from a timed sample of them."""
    data = {r.id: (r.version, r.values) for r in rows}

    def result(q: Query) -> list[tuple[bytes, str, int]]:
        hits = ((q.sort_key(rid, v), rid, ver) for rid, (ver, v) in data.items() if q.matches(v))
        return heapq.nsmallest(q.limit, hits)

    picked = random.Random(1).sample(queries, min(sample, len(queries)))
    last = {id(q): result(q) for q in picked}
    spent = 0.0
    for change in changes:
        assert change.values is not None
        data[change.id] = (change.version, change.values)
        start = time.process_time()
        for q in picked:
            now = result(q)
            before = last[id(q)]
            _ = [r for r in now if r not in before], [r for r in before if r not in now]
            last[id(q)] = now
        spent += time.process_time() - start
    per_change = spent / len(changes) / len(picked) * shapes
    return 1 / per_change


def _warm(m: Matcher, qs: list[Query]) -> None:
    """Build every index `qs` use (they cost per row, not per subscription) beforehand."""
    for q in {(q.sort_spec, plan_for(q.where).path): q for q in qs}.values():
        path = plan_for(q.where).path
        where = {".".join(path): "never"} if path else {"_": "never"}
        sort = q.sort_spec.split(",") if q.sort_spec else []
        warm = _parse({"entity": E, "where": where, "sort": sort, "limit": 1})
        m.subscribe(f"warm {warm.shape!r}", T, warm)


def _used() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _memory(rows: list[Row], queries: list[Query], one: Query, subs: int) -> dict[str, float]:
    """Bytes per cached row (row map, one sort index, one value index; the values dicts
    counted apart) and per subscription, with its indexes built beforehand."""
    by_sort = _parse({"entity": E, "sort": ["-prio", "ts"], "limit": 1})
    by_value = _parse({"entity": E, "where": {"cat": "c01"}, "sort": ["-prio", "ts"], "limit": 1})
    tracemalloc.start()
    n = len(rows)
    a = _used()
    copied = [Row(r.id, r.version, dict(r.values)) for r in rows]
    b = _used()
    m = Matcher(SIGNER)
    m.load(T, E, copied)
    c = _used()
    m.subscribe("sort", T, by_sort)
    d = _used()
    m.subscribe("value", T, by_value)
    e = _used()
    out = {"values": (b - a) / n, "row": (c - b) / n, "sort": (d - c) / n, "value": (e - d) / n}
    del m, copied
    for name, qs in (("sub_shapes", queries), ("sub_one", [one])):
        m2 = Matcher(SIGNER)
        m2.load(T, E, rows)
        _warm(m2, qs)
        before = _used()
        _subscribe(m2, [_parse(q.to_json()) for q in qs], subs)
        out[name] = (_used() - before) / subs
    tracemalloc.stop()
    return out


def _med(st: dict[str, list[float]], key: str) -> float:
    return sorted(st[key])[len(st[key]) // 2]


def run(args: argparse.Namespace) -> int:
    rows, changes = _data(args, touch=False)
    _, touched = _data(args, touch=True)
    one = _parse(ONE_SHAPE)
    shapes = [_parse(q) for q in _shapes(args.shapes, random.Random(args.seed + 1))]
    st: dict[str, dict[str, list[float]]] = {k: {} for k in ("1", "2", "2t", "3")}

    def measure(stream: list[Change], qs: list[Query], subs: int, key: str) -> float:
        return median_of(args.runs, lambda: _timed(rows, stream, qs, subs, st[key]))

    one_view = measure(changes, [one], 1, "1")
    many = measure(changes, shapes, args.subs, "2")
    feed = measure(touched, shapes, args.subs, "2t")
    shared = measure(changes, [one], args.subs, "3")
    naive = median_of(args.runs, lambda: _naive(
        rows, changes[: args.naive_changes], shapes, args.naive_queries, len(shapes)))
    mem = _memory(rows, shapes, one, args.subs)
    subs = f"{args.subs:,} subs"
    table: list[TableRow] = [
        ("(1) 1 view, limit 50: changes/s", f"{one_view:,.0f}",
         f"goal >= 50,000; p99 {_med(st['1'], 'p99'):.0f} us/change"),
        (f"(2) {subs} / {len(shapes):,} shapes: changes/s", f"{many:,.0f}",
         f"goal >= 20,000; p99 {_med(st['2'], 'p99'):.0f} us/change"),
        ("(2) view deltas/s (encoded once each)", f"{_med(st['2'], 'deltas'):,.0f}",
         f"{_med(st['2'], 'deliveries'):,.0f} subscriber deliveries/s"),
        ("(2t) same, every update sets ts: changes/s", f"{feed:,.0f}",
         f"{_med(st['2t'], 'deltas'):,.0f} view deltas/s; p99 {_med(st['2t'], 'p99'):.0f} us"),
        (f"(3) {subs} / 1 shape: changes/s", f"{shared:,.0f}",
         f"{one_view / shared:.2f}x the time of (1); goal within 2x"),
        ("(4) naive re-run + diff: changes/s", f"{naive:,.2f}",
         f"(2) is {many / naive:,.0f}x faster; goal >= 100x; "
         f"{args.naive_queries} of {len(shapes)} queries x {args.naive_changes} changes"),
        ("(5) memory per subscription, 1k shapes", f"{mem['sub_shapes']:,.0f} B",
         "goal <= 2 KB; views, windows, dispatch, ids"),
        ("(5) memory per subscription, 1 shape", f"{mem['sub_one']:,.0f} B", "ids and routes"),
        ("(5) memory per cached row", f"{mem['row']:,.0f} B",
         f"+ {mem['sort']:,.0f} B per sort index, + {mem['value']:,.0f} B per value index; "
         f"values dicts {mem['values']:,.0f} B"),
    ]
    print_table(
        f"lq bench matcher: {args.rows:,} rows, {args.changes:,} random updates a run, "
        f"median of {args.runs} (CPU time)",
        table,
    )
    return 0
