"""`lq`: the command line. Subcommands register themselves from their modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from lq import dev, gateway_cmd, shard_cmd, status_cmd, token_cmd
from lq.bench import cluster as bench_cluster
from lq.bench import gateway as bench_gateway
from lq.bench import http as bench_http
from lq.bench import matcher as bench_matcher
from lq.bench import storage as bench_storage

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return version("lq-cluster")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lq", description="lq: a live query cluster on Redis")
    parser.add_argument("--version", action="version", version=f"lq {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dev_parser = commands.add_parser("dev", help="run a local cluster with an embedded Redis")
    dev.configure(dev_parser)
    dev_parser.set_defaults(run=dev.run)
    for name, module, text in (
        ("gateway", gateway_cmd, "run the HTTP gateway (flags > LQ_ environment > defaults)"),
        ("shard", shard_cmd, "run a shard (flags > LQ_ environment > defaults)"),
        ("token", token_cmd, "print an HS256 token for a tenant and scopes (development)"),
        ("status", status_cmd, "live shards and gateways, their counters, unowned partitions"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    bench = commands.add_parser("bench", help="run a benchmark and print a table of medians")
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, module, text in (
        ("storage", bench_storage, "write path, collection load and one-shot query"),
        ("matcher", bench_matcher, "the in-memory matcher: changes/s, sharing, memory"),
        ("cluster", bench_cluster, "Redis + 2 shards + a simulated gateway: latency, failover"),
        ("http", bench_http, "single-row PUT through the gateway vs. a bare SET endpoint"),
        ("gateway", bench_gateway, "live fan-out, connections and delivery vs. a bare broadcast"),
    ):
        sub = benches.add_parser(name, help=text, description=text)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
