"""`lq shard`: run one shard process (flags > `LQ_` environment > defaults).

The shard id defaults to the host name, so a StatefulSet pod keeps its id, and with it
its control stream and consumer group, across restarts. SIGTERM and SIGINT drain. The
event loop is uvloop when it is installed, or as `--loop` / `LQ_LOOP` asks (lq/_loop.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket
import sys

from cluster.settings import QueryLimits, ShardSettings, StorageSettings
from lq._flags import add_settings_flags, settings_from
from lq._jsonlog import configure_json_logging
from lq._loop import loop_factory
from lq._loop import run as run_on
from shard.runtime import ShardService

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, ShardSettings, "shard")
    add_settings_flags(parser, StorageSettings, "storage (Redis)")
    add_settings_flags(parser, QueryLimits, "query limits")


async def _serve(service: ShardService) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    await service.run()


def run(args: argparse.Namespace) -> int:
    flush = configure_json_logging()
    env = dict(os.environ)
    try:
        settings = settings_from(ShardSettings, args, env)
        if not settings.shard_id:
            settings = dataclasses.replace(settings, shard_id=socket.gethostname())
        service = ShardService(
            settings,
            settings_from(StorageSettings, args, env),
            settings_from(QueryLimits, args, env),
        )
        _, factory = loop_factory(settings.loop)
    except ValueError as e:
        print(f"lq shard: {e}", file=sys.stderr)
        return 2
    try:
        run_on(_serve(service), factory)
    finally:
        flush()
    return 0
