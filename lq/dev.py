"""`lq dev`: a whole cluster on one machine, with one command.

It starts an embedded Redis (AOF on, in a temporary directory, on a free loopback port)
unless `--redis-url` names one, then the shards (`shard-0` ... on free health ports) and
the gateways (`--port`, `--port + 1`, ...) as child processes sharing one JWT secret,
waits for each to be ready, prints the URLs and a development token, and supervises
them until Ctrl-C or SIGTERM (a child that dies is reported and started again after a
backoff; if the embedded Redis dies, everything stops with an error). On the way out it
stops the gateways (they drain), then the shards (they hand their partitions over),
then the Redis it started, and removes that Redis's directory: no process and no file
is left behind.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from gateway.auth import issue_token
from lq.embedded import EmbeddedRedis
from lq.supervisor import ChildSpec, Supervisor
from storage import redact

__all__ = ["DEV_SCOPES", "DEV_TENANT", "configure", "run"]

DEV_TENANT = "dev"
DEV_SCOPES = "lq:read:* lq:write:* lq:admin"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080,
                        help="first gateway's port; the next ones use port+1, ... (default 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the gateways listen on (default 127.0.0.1)")
    parser.add_argument("--shards", type=int, default=2, help="number of shards (default 2)")
    parser.add_argument("--gateways", type=int, default=1, help="number of gateways (default 1)")
    parser.add_argument("--redis-url",
                        help="use this Redis instead of starting an embedded one")
    parser.add_argument(
        "--appendfsync", choices=["everysec", "always"], default="everysec",
        help="embedded Redis's AOF fsync policy: everysec may lose the last second of "
             "writes on a crash, always loses none and is slower (default everysec)",
    )
    parser.add_argument("--token-ttl", type=float, default=86400.0,
                        help="seconds the printed development token is valid (default 86400)")
    parser.add_argument("--ready-timeout", type=float, default=60.0,
                        help="seconds each process may take to become ready (default 60)")
    parser.add_argument("--logs", action="store_true",
                        help="echo every process's log lines (default: only when one fails)")


@dataclass(frozen=True, slots=True)
class _Plan:
    redis_url: str
    secret: str
    secret_is_random: bool
    gateway_urls: list[str]


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_args(args: argparse.Namespace) -> str | None:
    if args.shards < 0 or args.gateways < 1:
        return "--shards must be 0 or more and --gateways 1 or more"
    if not 0 < args.port <= 65535 - args.gateways:
        return "--port must leave room for every gateway below 65536"
    for i in range(args.gateways):
        if not _port_free(args.host, args.port + i):
            return f"port {args.port + i} on {args.host} is in use: choose another with --port"
    secret = os.environ.get("LQ_JWT_SECRET", "")
    if secret and len(secret.encode()) < 32:
        return "LQ_JWT_SECRET must be at least 32 bytes (or unset: a random one is made)"
    return None


def _shard_specs(count: int, base: dict[str, str]) -> list[ChildSpec]:
    specs = []
    for i in range(count):
        port = _free_port()
        env = {**base, "LQ_SHARD_ID": f"shard-{i}", "LQ_HTTP_HOST": "127.0.0.1",
               "LQ_HTTP_PORT": str(port)}
        specs.append(ChildSpec(
            name=f"shard-{i}", argv=[sys.executable, "-m", "lq", "shard"], env=env,
            ready_url=f"http://127.0.0.1:{port}/readyz", detail=f"health :{port}",
        ))
    return specs


def _gateway_specs(args: argparse.Namespace, base: dict[str, str]) -> list[ChildSpec]:
    local = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
    specs = []
    for i in range(args.gateways):
        port = args.port + i
        argv = [sys.executable, "-m", "lq", "gateway", "--host", args.host, "--port", str(port)]
        specs.append(ChildSpec(
            name=f"gateway-{i}", argv=argv, env=dict(base),
            ready_url=f"http://{local}:{port}/readyz", detail=f"http://{local}:{port}",
        ))
    return specs


def _banner(say: Callable[[str], None], plan: _Plan, args: argparse.Namespace) -> None:
    token = issue_token(plan.secret, DEV_TENANT, DEV_SCOPES, args.token_ttl)
    url = plan.gateway_urls[0]
    say("")
    say(f"lq dev is up: {args.shards} shard(s), {args.gateways} gateway(s)")
    for gateway_url in plan.gateway_urls:
        say(f"  url      {gateway_url}")
    say(f"  redis    {redact(plan.redis_url)}")
    say(f"  token    {token}")
    say(f"           (tenant {DEV_TENANT}; scopes {DEV_SCOPES}; valid {args.token_ttl:.0f} s)")
    if plan.secret_is_random:
        say(f"  secret   {plan.secret}")
        say("           (random for this run: export LQ_JWT_SECRET to keep tokens valid)")
    else:
        say("  secret   from LQ_JWT_SECRET")
    say("try it:")
    say(f"  export TOKEN={token}")
    say(f"  curl -X PUT {url}/v1/entities/tasks/rows/t1 -H \"Authorization: Bearer $TOKEN\" "
        "-d '{\"title\": \"hello\", \"priority\": 3}'")
    say(f"  lq status --redis-url {redact(plan.redis_url)}")
    say("press Ctrl-C to stop")


def _printer() -> Callable[[str], None]:
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    return say


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        print(f"lq dev: {problem}", file=sys.stderr)
        return 2
    say = _printer()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        if not stop.is_set():
            say(f"lq dev: {signal.Signals(signum).name}: stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    redis: EmbeddedRedis | None = None
    supervisor = Supervisor(say, echo=args.logs, abort=stop)
    code = 0
    try:
        if args.redis_url:
            redis_url = args.redis_url
            say(f"{'redis':<10} {'external':<9} {'':<10}  {redact(redis_url)}")
        else:
            say(f"{'redis':<10} starting")
            redis = EmbeddedRedis(appendonly=True, appendfsync=args.appendfsync).start()
            redis_url = redis.url
            say(f"{'redis':<10} {'ready':<9} {'pid ' + str(redis.pid):<10}  {redis_url}  "
                f"(embedded, AOF appendfsync {args.appendfsync}, dir {redis.dir})")
        secret = os.environ.get("LQ_JWT_SECRET", "")
        plan = _Plan(redis_url, secret or secrets.token_hex(32), not secret, [])
        base = {**os.environ, "LQ_REDIS_URL": redis_url, "LQ_JWT_SECRET": plan.secret}
        gateways = _gateway_specs(args, base)
        plan.gateway_urls.extend(spec.detail for spec in gateways)
        if not (supervisor.start_group(_shard_specs(args.shards, base), args.ready_timeout)
                and supervisor.start_group(gateways, args.ready_timeout)):
            code = 0 if stop.is_set() else 1
            return code
        _banner(say, plan, args)
        while not stop.wait(0.25):
            supervisor.tick()
            if redis is not None and redis.exited() is not None:
                say(f"lq dev: the embedded Redis exited with {redis.exited()}: stopping")
                code = 1
                break
        return code
    finally:
        supervisor.stop([supervisor.of_kind("gateway"), supervisor.of_kind("shard")])
        if redis is not None:
            redis.stop()
            say(f"{'redis':<10} stopped   (its directory is removed)")
        say("lq dev: stopped" + ("" if code == 0 else " with an error"))
