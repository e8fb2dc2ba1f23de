"""`lq bench e2e`: write -> client latency through real processes, end to end.

An embedded Redis (AOF on, appendfsync everysec, as `lq dev` runs it; or `--redis-url`),
`--shards` shards and `--gateways` gateways (`_e2e_cluster`), a writer process sending
single-row HTTP PUTs at a fixed rate over keep-alive connections to the gateways
(`_e2e_writer`), and `--ws` WebSocket plus `--sse` SSE clients in this process, each
with one window subscription over its own collection (`_e2e_clients`). The latency of a
write is from the moment its request is written to the socket (the row carries that
time) to the moment its `update` reaches the client, on the machine's one monotonic
clock. Measured, with medians over `--repeat` runs:
- p50 / p99 / max per transport at each of `--rates` for `--duration` seconds, with the
  same writes' HTTP round trip and a bare Redis PING as baselines of the same run;
- the saturation point: from `--sat-from`, the rate is multiplied by `--sat-step` while
  a step keeps up (`_e2e_step.keeps_up`: 95% of the asked rate sent, every write
  answered 200 and delivered, no reset, WebSocket p99 within `--sat-p99`), up to
  `--sat-max`; the point is the last rate that kept up.

Bounded: every step sends at most `rate * duration` writes and waits at most `--drain`
seconds for them; the run stops stepping after `--max-seconds`. Everything started is
stopped by its pid on the way out, Ctrl-C included. Exit 1 when a write answered 200
never reached its client without a reset to explain it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import httpx

from cluster.settings import StorageSettings
from gateway.auth import issue_token
from lq.bench._e2e_clients import Clients
from lq.bench._e2e_cluster import Cluster, running
from lq.bench._e2e_step import Step, keeps_up, run_step
from lq.bench._e2e_writer import Plan, row_of
from lq.bench._table import Row, print_table, quantile
from lq.embedded import redis_or_embedded
from storage import Storage

__all__ = ["configure", "run"]

_SECRET = "bench-secret-" + "0123456789abcdef" * 3
_GOAL_RATE, _GOAL_P50, _GOAL_P99 = 1000.0, 3.0, 15.0


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--redis-url", help="Redis to use (default: start an embedded one)")
    add("--rates", default="100,1000,5000", help="writes/s to measure (default 100,1000,5000)")
    add("--duration", type=float, default=4.0, help="seconds of writing per step (default 4)")
    add("--repeat", type=int, default=3, help="runs; medians are printed (default 3)")
    add("--shards", type=int, default=2, help="shard processes (default 2)")
    add("--gateways", type=int, default=2, help="gateway processes, 1-2 (default 2)")
    add("--ws", type=int, default=16, help="WebSocket clients (default 16)")
    add("--sse", type=int, default=2, help="SSE clients (default 2)")
    add("--slots", type=int, default=10,
        help="rows per client's collection, its window's limit (default 10)")
    add("--connections", type=int, default=32, help="writer connections (default 32)")
    add("--sat-from", type=float, default=250.0,
        help="first rate of the saturation search, writes/s (default 250)")
    add("--sat-step", type=float, default=1.25, help="rate factor per step (default 1.25)")
    add("--sat-max", type=float, default=20000.0,
        help="highest rate the search tries (default 20000)")
    add("--sat-p99", type=float, default=50.0,
        help="WebSocket p99 bound (ms) for a step that keeps up (default 50)")
    add("--no-saturation", action="store_true", help="skip the saturation search")
    add("--drain", type=float, default=10.0,
        help="seconds a step waits for late deliveries (default 10)")
    add("--max-seconds", type=float, default=900.0,
        help="stop stepping after this long (default 900)")
    add("--plot", metavar="PATH", help="write a PNG of latency percentiles against rate")


def _problem(args: argparse.Namespace) -> str | None:
    """Why the flags cannot be run as given (refused, never adjusted), or None."""
    try:
        rates = _rates(args.rates)
    except ValueError:
        return "--rates must be positive numbers separated by commas"
    checks = [
        (bool(rates), "--rates names no rate"),
        (args.duration > 0 and args.drain > 0 and args.max_seconds > 0,
         "--duration, --drain and --max-seconds must be positive"),
        (args.repeat >= 1, "--repeat must be 1 or more"),
        (1 <= args.shards <= 8, "--shards must be 1-8"),
        (1 <= args.gateways <= 2, "--gateways must be 1 or 2"),
        (args.ws >= 1 and args.sse >= 0, "--ws must be 1 or more and --sse 0 or more"),
        (1 <= args.slots <= 1000, "--slots must be 1-1000 (the window limit)"),
        (1 <= args.connections <= 1000, "--connections must be 1-1000"),
        (0 < args.sat_from <= args.sat_max and args.sat_step > 1 and args.sat_p99 > 0,
         "the saturation search needs 0 < --sat-from <= --sat-max, --sat-step > 1 and "
         "--sat-p99 > 0"),
    ]
    return next((why for ok, why in checks if not ok), None)


def _rates(text: str) -> list[float]:
    rates = [float(r) for r in text.split(",") if r.strip()]
    if any(not math.isfinite(r) or r <= 0 for r in rates):
        raise ValueError(text)
    return rates


def _say(line: str) -> None:
    print(f"e2e: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        print(f"lq bench e2e: {problem}", file=sys.stderr)
        return 2
    if args.plot:
        from lq.bench._e2e_plot import missing_package

        missing = missing_package()
        if missing:
            from lq.cli import missing_extra

            missing_extra("e2e --plot", missing)
            return 2
    load = os.getloadavg()[0]
    with redis_or_embedded(args.redis_url, appendonly=True) as url, \
            running(url, _SECRET, args.shards, args.gateways, _say) as cluster:
        bench = _Bench(args, url, cluster)
        asyncio.run(bench.measure())
    rows = _table(args, bench, load)
    print_table(f"lq bench e2e ({args.shards} shards, {args.gateways} gateway(s); "
                f"medians of {args.repeat} run(s))", rows)
    if args.plot:
        from lq.bench._e2e_plot import plot

        plot(args.plot, bench.steps, bench.saturation)
        print(f"plot written to {args.plot}")
    return 1 if bench.unexplained_loss() else 0


class _Bench:
    def __init__(self, args: argparse.Namespace, redis_url: str, cluster: Cluster) -> None:
        self.args = args
        self.redis_url = redis_url
        self.cluster = cluster
        self.token = issue_token(_SECRET, "bench", "lq:read:* lq:write:*", ttl=7200)
        self.collections = args.ws + args.sse
        self.next_n = 0
        self.steps: list[Step] = []  # every measured step, saturation steps included
        self.fixed: list[list[Step]] = []  # per run, one step per rate of --rates
        self.saturation: list[tuple[float, bool]] = []  # per run: (point, capped)
        self.ping_ms = math.nan
        self.stopped_early = False

    def unexplained_loss(self) -> bool:
        return any(s.missing and not s.resets for s in self.steps)

    async def measure(self) -> None:
        self.ping_ms = await self._redis_ping()
        await self._seed()
        clients = Clients(self.cluster.gateway_ports, self.token, self.args.ws, self.args.sse,
                          self.args.slots)
        try:
            await clients.open()
            await clients.wait_synced(60)
            _say(f"{self.args.ws} WebSocket + {self.args.sse} SSE clients synced; warming up")
            await run_step(clients, self._plan(min(200.0, *_rates(self.args.rates)), 1.0),
                           self.args.drain)
            await self._runs(clients)
        finally:
            await clients.close()

    async def _runs(self, clients: Clients) -> None:
        deadline = time.monotonic() + self.args.max_seconds
        for run in range(1, self.args.repeat + 1):
            fixed = []
            for rate in _rates(self.args.rates):
                if time.monotonic() > deadline:
                    self.stopped_early = True
                    return
                fixed.append(await self._step(clients, rate, f"run {run}/{self.args.repeat}"))
            self.fixed.append(fixed)
            if not self.args.no_saturation:
                self.saturation.append(await self._search(clients, run, deadline))

    async def _search(self, clients: Clients, run: int, deadline: float) -> tuple[float, bool]:
        """(the last rate that kept up, or 0; whether the search stopped at --sat-max)."""
        rate, kept = self.args.sat_from, 0.0
        while rate <= self.args.sat_max * 1.0001:
            if time.monotonic() > deadline:
                self.stopped_early = True
                return kept, False
            step = await self._step(clients, rate, f"run {run}, saturation search")
            if not keeps_up(step, self.args.sat_p99):
                return kept, False
            kept = rate
            rate *= self.args.sat_step
        return kept, True

    async def _step(self, clients: Clients, rate: float, where: str) -> Step:
        _say(f"{where}: {rate:,.0f} writes/s for {self.args.duration:g} s")
        step = await run_step(clients, self._plan(rate, self.args.duration), self.args.drain)
        self.steps.append(step)
        lost = f", {step.missing} not delivered" if step.missing else ""
        _say(f"  sent {step.achieved:,.0f}/s, WS p50 {step.ws[0]:.2f} p99 {step.ws[1]:.2f} "
             f"max {step.ws[2]:.2f} ms, HTTP p50 {step.ack[0]:.2f} ms{lost}")
        await asyncio.sleep(0.3)
        return step

    def _plan(self, rate: float, duration: float) -> Plan:
        plan = Plan(ports=self.cluster.gateway_ports, token=self.token, rate=rate,
                    duration=duration, connections=self.args.connections,
                    collections=self.collections, slots=self.args.slots, first=self.next_n)
        self.next_n += math.ceil(rate * duration) + 1
        return plan

    async def _redis_ping(self) -> float:
        front = Storage.open(StorageSettings(redis_url=self.redis_url))
        try:
            await front.client.ping()
            times = []
            for _ in range(300):
                start = time.perf_counter()
                await front.client.ping()
                times.append((time.perf_counter() - start) * 1000)
            return quantile(times, 0.5)
        finally:
            await front.aclose()

    async def _seed(self) -> None:
        port = self.cluster.gateway_ports[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     headers={"Authorization": f"Bearer {self.token}"}) as http:
            for k in range(self.collections):
                ops = [{"op": "put", "entity": f"e{k}", "id": f"r{s}", "row": row_of(s, -1, 0.0)}
                       for s in range(self.args.slots)]
                reply = await http.post("/v1/batch", json={"ops": ops})
                reply.raise_for_status()


# --------------------------------------------------------------------------- the table


def _ms(values: Sequence[float]) -> str:
    return " / ".join("-" if math.isnan(v) else f"{v:.2f}" for v in values)


def _median(steps: Sequence[Step], pick: Callable[[Step], float]) -> float:
    values = [v for v in map(pick, steps) if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _rate_rows(args: argparse.Namespace, steps: list[Step], ping: float) -> list[Row]:
    rate = steps[0].rate
    at = f"@ {rate:,.0f}/s"
    med = {name: tuple(_median(steps, lambda s, i=i, n=name: getattr(s, n)[i])  # type: ignore[misc]
                       for i in range(3 if name != "ack" else 2))
           for name in ("ws", "sse", "ack")}
    achieved = _median(steps, lambda s: s.achieved)
    missing, resets = sum(s.missing for s in steps), sum(s.resets for s in steps)
    delivered = "all delivered" if not missing else f"{missing} NOT DELIVERED"
    note = (f"sent {achieved:,.0f}/s; {sum(s.acked for s in steps):,} writes, {delivered}"
            + (f", {resets} resets" if resets else "")
            + (f", {sum(s.errors for s in steps)} not answered 200" if any(
                s.errors for s in steps) else ""))
    if rate == _GOAL_RATE:
        note += f"; goal p50 <= {_GOAL_P50:g}, p99 <= {_GOAL_P99:g} ms"
    rows: list[Row] = [
        (f"{at} write -> WebSocket p50 / p99 / max", _ms(med["ws"]) + " ms", note),
    ]
    if args.sse:
        rows.append((f"{at} write -> SSE p50 / p99 / max", _ms(med["sse"]) + " ms", ""))
    rows += [
        (f"{at} write -> HTTP 200 p50 / p99", _ms(med["ack"]) + " ms",
         "baseline: the same writes' own round trip"),
        (f"{at} WebSocket p50 / HTTP p50 / PING", f"{med['ws'][0] / med['ack'][0]:.1f}x / "
         f"{med['ws'][0] / ping:.0f}x", "ratios to this run's baselines"),
    ]
    return rows


def _saturation_row(args: argparse.Namespace, found: list[tuple[float, bool]]) -> Row:
    points = [p for p, _ in found]
    point = statistics.median(points)
    runs = ", ".join((f"{p:,.0f}" if p else f"< {args.sat_from:,.0f}") + ("+" if capped else "")
                     for p, capped in found)
    rule = (f"last step of x{args.sat_step:g} from {args.sat_from:,.0f} that kept up "
            f"(WS p99 <= {args.sat_p99:g} ms); runs: {runs}")
    if point == 0:
        return ("saturation point", f"< {args.sat_from:,.0f} writes/s", rule)
    capped = all(c for _, c in found)
    return ("saturation point", f"{'>= ' if capped else ''}{point:,.0f} writes/s", rule)


def _table(args: argparse.Namespace, bench: _Bench, load_before: float) -> list[Row]:
    rows: list[Row] = [
        ("machine", f"{os.cpu_count()} cores",
         f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"),
        ("clients", f"{args.ws} WS + {args.sse} SSE",
         f"one window subscription each (limit {args.slots}), over {args.gateways} "
         f"gateway(s); {args.connections} writer connections"),
        ("Redis PING round trip p50", f"{bench.ping_ms:.3f} ms",
         "baseline: this process -> Redis, one at a time"),
    ]
    for i in range(len(bench.fixed[0]) if bench.fixed else 0):
        rows += _rate_rows(args, [run[i] for run in bench.fixed if i < len(run)],
                           bench.ping_ms)
    if bench.saturation:
        rows.append(_saturation_row(args, bench.saturation))
    if bench.stopped_early:
        rows.append(("stopped early", f"after {args.max_seconds:g} s", "--max-seconds"))
    return rows
