"""One point of `lq bench scaling`'s matcher sweep, measured in a fresh process.

`point(...)` runs `python -m lq.bench._scaling_matcher SUBS SHAPES ROWS CHANGES SEED`
and reads back one JSON object; the child builds `lq bench matcher`'s workload (its
`_data`, `_shapes`, `_warm`, `_subscribe` and `_timed`, imported, not restated), so
the sweep measures the same mix of shapes as that bench, only at other sizes. A fresh
process per point keeps one point's freed memory from hiding the next one's growth.

In the child, in this order:
1. RSS: load the rows, build the indexes the shapes use, then subscribe SUBS
   subscriptions over SHAPES distinct shapes; the RSS before and after (after a full
   collection) gives bytes per subscription, and the RSS after is the whole process
   (interpreter + rows + indexes + subscriptions).
2. tracemalloc: the same on a second matcher, traced only while subscribing: the bytes
   Python allocates per subscription, without allocator slack.
3. changes/s: `_timed` (a third matcher: load, subscribe, apply CHANGES random
   updates, in CPU time), with view deltas/s and p99 per change.

The child is killed (by its pid, which `subprocess.run` holds) when it outlives
`timeout`; the parent gets a RuntimeError naming the point.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from lq.bench.matcher import SIGNER, E, T, _data, _parse, _shapes, _subscribe, _timed, _warm
from shard import Matcher

__all__ = ["point"]

KEYS = ("subs", "shapes", "rss_total", "rss_per_sub", "traced_per_sub", "changes_s",
        "deltas_s", "p99_us")
"""The figures of one point (bytes, per second, microseconds), in the child's JSON."""


def point(subs: int, shapes: int, rows: int, changes: int, seed: int,
          timeout: float) -> dict[str, float]:
    """The figures of one point, from a fresh child process (see the module doc)."""
    cmd = [sys.executable, "-m", "lq.bench._scaling_matcher",
           *(str(x) for x in (subs, shapes, rows, changes, seed))]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"matcher point at {subs:,} subscriptions took over "
                           f"{timeout:.0f} s (killed)") from None
    if done.returncode != 0:
        raise RuntimeError(f"matcher point at {subs:,} subscriptions failed "
                           f"({done.returncode}):\n{done.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: float(out[k]) for k in KEYS}


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _measure(subs: int, n_shapes: int, rows_n: int, changes_n: int,
             seed: int) -> dict[str, float]:
    workload = argparse.Namespace(rows=rows_n, changes=changes_n, seed=seed)
    rows, changes = _data(workload, touch=False)
    queries = [_parse(q) for q in _shapes(n_shapes, random.Random(seed + 1))]
    fresh = [_parse(q.to_json()) for q in queries]  # not the objects _warm saw

    m = Matcher(SIGNER)
    m.load(T, E, rows)
    _warm(m, queries)
    gc.collect()
    before = _rss_bytes()
    _subscribe(m, fresh, subs)
    gc.collect()
    total = _rss_bytes()
    del m
    gc.collect()

    m = Matcher(SIGNER)
    m.load(T, E, rows)
    _warm(m, queries)
    gc.collect()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    _subscribe(m, fresh, subs)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    del m
    gc.collect()

    stats: dict[str, list[float]] = {}
    rate = _timed(rows, changes, queries, subs, stats)
    return {"subs": subs, "shapes": len(queries), "rss_total": total,
            "rss_per_sub": (total - before) / subs, "traced_per_sub": traced / subs,
            "changes_s": rate, "deltas_s": stats["deltas"][0], "p99_us": stats["p99"][0]}


def main(argv: list[str]) -> int:
    subs, shapes, rows, changes, seed = (int(x) for x in argv)
    if min(subs, shapes, rows, changes) < 1:
        print("every size must be at least 1", file=sys.stderr)
        return 2
    print(json.dumps(_measure(subs, shapes, rows, changes, seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
