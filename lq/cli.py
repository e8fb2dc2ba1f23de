"""`lq`: the command line. Subcommands register themselves from their modules.

Invariant: `lq` starts with the runtime dependencies only (a plain `pip install`). A
benchmark's module is imported only when that benchmark is asked for, and when it needs
a package of the `bench` extra that is missing, the command says which one and how to
install it instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, requires, version
from types import ModuleType

from lq import dev, gateway_cmd, shard_cmd, status_cmd, token_cmd
from lq.chaos import command as chaos_cmd

__all__ = ["build_parser", "main", "missing_extra"]

DISTRIBUTION = "lq-cluster"
BENCH_EXTRA = "bench"
# name -> (module, help); the module is imported only when its benchmark runs
BENCHES: dict[str, tuple[str, str]] = {
    "storage": ("lq.bench.storage", "write path, collection load and one-shot query"),
    "oneshot": ("lq.bench.oneshot", "one-shot queries from the owner's memory vs. the scan"),
    "matcher": ("lq.bench.matcher", "the in-memory matcher: changes/s, sharing, memory"),
    "cluster": ("lq.bench.cluster", "Redis + 2 shards + a simulated gateway: latency, failover"),
    "failover": ("lq.bench.failover", "failover time against the rows the failed shard held"),
    "http": ("lq.bench.http", "single-row PUT through the gateway vs. a bare SET endpoint"),
    "gateway": ("lq.bench.gateway",
                "live fan-out, connections and delivery vs. a bare broadcast"),
    "e2e": ("lq.bench.e2e",
            "write -> WebSocket/SSE client latency through real processes; saturation"),
    "scaling": ("lq.bench.scaling",
                "changes/s and memory against subscriptions and connections (sizing)"),
}


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def extra_packages(extra: str) -> set[str]:
    """The distribution names an extra of lq-cluster asks for (normalized), from its
    installed metadata, so pyproject.toml stays the only list."""
    try:
        wanted = requires(DISTRIBUTION) or []
    except PackageNotFoundError:
        return set()
    names = set()
    for line in wanted:
        requirement, _, marker = line.partition(";")
        if f'extra == "{extra}"' in marker.replace("'", '"'):
            name = requirement.split("[")[0]
            for stop in "<>=!~ (":
                name = name.split(stop)[0]
            names.add(name.strip().lower().replace("-", "_"))
    return names


def missing_extra(bench: str, package: str) -> None:
    """Say on stderr that `lq bench <bench>` needs `package` of the bench extra."""
    print(
        f"lq bench {bench} needs {package!r}, which comes with the {BENCH_EXTRA!r} extra:\n"
        f"  pip install '{DISTRIBUTION}[{BENCH_EXTRA}]'    (from a checkout: "
        f"pip install '.[{BENCH_EXTRA}]')",
        file=sys.stderr,
    )


def load_bench(name: str) -> ModuleType | str:
    """The benchmark's module, or the name of the missing `bench` extra package it needs."""
    try:
        return importlib.import_module(BENCHES[name][0])
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing.lower() not in extra_packages(BENCH_EXTRA):
            raise
        return missing


def _selected_bench(argv: Sequence[str]) -> str | None:
    words = [w for w in argv if not w.startswith("-")]
    return words[1] if len(words) >= 2 and words[0] == "bench" else None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; `argv` says which benchmark (if any) to import and configure."""
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
        ("chaos", chaos_cmd, "inject faults into a real cluster and check every live list"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    bench = commands.add_parser("bench", help="run a benchmark and print a table of medians")
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    selected = _selected_bench(argv)
    for name, (_, text) in BENCHES.items():
        sub = benches.add_parser(name, help=text, description=text)
        found = load_bench(name) if name == selected else None
        if isinstance(found, ModuleType):
            found.configure(sub)
            sub.set_defaults(run=found.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    bench = _selected_bench(words)
    if bench in BENCHES and isinstance(missing := load_bench(bench), str):
        missing_extra(bench, missing)
        return 2
    parser = build_parser(words)
    args = parser.parse_args(words)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
