"""`lq dev`: one command, one machine. Today it starts the embedded Redis (AOF on, in a
temporary directory) and keeps it until Ctrl-C or SIGTERM, then removes it; shards and
gateways join it as those issues land (see README)."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from lq.embedded import EmbeddedRedis

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--appendfsync",
        choices=["everysec", "always"],
        default="everysec",
        help="AOF fsync policy: everysec may lose the last second on a crash",
    )


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with EmbeddedRedis(appendonly=True, appendfsync=args.appendfsync) as server:
        print(f"redis    {server.url}  (embedded, AOF appendfsync {args.appendfsync})", flush=True)
        print(
            "shards and gateways: not built yet (the shard runtime and gateway issues)", flush=True
        )
        print("press Ctrl-C to stop", flush=True)
        stop.wait()
    print("stopped; embedded Redis and its files removed", flush=True)
    return 0
