"""`lq dev`: a whole cluster on one machine, with one command.

It takes its state directory (`lq._devstate`: one lq dev per directory), starts an
embedded Redis (AOF on, its files in that directory, on a free loopback port) unless
`--redis-url` names one, then the shards (`shard-0` ... on free health ports) and the
gateways (`--port`, `--port + 1`, ...) as child processes sharing one JWT secret (from
`LQ_JWT_SECRET`, else the one kept in the state directory, so tokens outlive a restart),
waits for each to be ready, records the cluster, prints the URLs and a development token
(never the secret), and supervises them until Ctrl-C, SIGTERM or SIGHUP (a child that
dies is reported and started again after a backoff; if the embedded Redis dies,
everything stops with an error). On the way out it stops the gateways (they drain), then
the shards (they hand their partitions over), then the Redis it started, removes that
Redis's directory and its record: no process and no file is left behind. If lq dev is
SIGKILLed, the kernel kills its children (`lq._orphan_guard`) and the next lq dev
removes the Redis directory left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from gateway.auth import issue_token
from lq._devstate import STATE_ENV, Cluster, DevStateError, Owner, state_dir
from lq._net import free_port, port_free
from lq.embedded import EmbeddedRedis
from lq.supervisor import ChildSpec, Supervisor
from lq.token_cmd import secret_problem
from storage import redact

__all__ = ["DEV_SCOPES", "DEV_TENANT", "configure", "run"]

DEV_TENANT = "dev"
DEV_SCOPES = "lq:read:* lq:write:* lq:admin"
# what lq dev's gateways allow browsers (the environment may say otherwise): pages on any
# local port, and the demo page at / (docs/browser.md)
DEV_BROWSER_ENV = {"LQ_CORS_ORIGINS": "http://localhost:*,http://127.0.0.1:*", "LQ_DEMO": "1"}


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
    parser.add_argument(
        "--state-dir",
        help=f"where the dev secret is kept and the running cluster recorded (default: "
             f"${STATE_ENV}, else $XDG_STATE_HOME/lq/dev or ~/.local/state/lq/dev)",
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    redis_url: str
    secret: str
    secret_from: str  # "state" or "LQ_JWT_SECRET"
    state: Owner
    gateway_urls: list[str]
    started_at: float = field(default_factory=time.time)


def _check_args(args: argparse.Namespace) -> str | None:
    if args.shards < 0 or args.gateways < 1:
        return "--shards must be 0 or more and --gateways 1 or more"
    if not 0 < args.port <= 65535 - args.gateways:
        return "--port must leave room for every gateway below 65536"
    secret = os.environ.get("LQ_JWT_SECRET", "")
    if secret:
        return secret_problem(secret, "LQ_JWT_SECRET")
    return None


def _check_ports(args: argparse.Namespace) -> str | None:
    for i in range(args.gateways):
        if not port_free(args.host, args.port + i):
            return f"port {args.port + i} on {args.host} is in use: choose another with --port"
    return None


def _shard_specs(count: int, base: dict[str, str]) -> list[ChildSpec]:
    specs = []
    for i in range(count):
        port = free_port()
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
            name=f"gateway-{i}", argv=argv, env={**DEV_BROWSER_ENV, **base},
            ready_url=f"http://{local}:{port}/readyz", detail=f"http://{local}:{port}",
        ))
    return specs


def _banner(say: Callable[[str], None], plan: _Plan, args: argparse.Namespace) -> None:
    token = issue_token(plan.secret, DEV_TENANT, DEV_SCOPES, args.token_ttl)
    url = plan.gateway_urls[0]
    where = f" --state-dir {plan.state.path}" if args.state_dir else ""
    say("")
    say(f"lq dev is up: {args.shards} shard(s), {args.gateways} gateway(s)")
    for gateway_url in plan.gateway_urls:
        say(f"  url      {gateway_url}")
    if os.environ.get("LQ_DEMO", "1") not in ("0", "false", "no"):
        say(f"  demo     {url}/  (a live table in your browser)")
    say(f"  redis    {redact(plan.redis_url)}")
    say(f"  token    {token}")
    say(f"           (tenant {DEV_TENANT}; scopes {DEV_SCOPES}; valid {args.token_ttl:.0f} s)")
    if plan.secret_from == "state":
        say(f"  secret   kept in {plan.state.path / 'secret'}")
        say("           (the same on every run, so tokens stay valid across restarts)")
    else:
        say("  secret   from LQ_JWT_SECRET")
    say(f"  state    {plan.state.path}")
    say("try it:")
    say(f"  export TOKEN={token}")
    say(f"  curl -X PUT {url}/v1/entities/tasks/rows/t1 -H \"Authorization: Bearer $TOKEN\" "
        "-d '{\"title\": \"hello\", \"priority\": 3}'")
    say(f"  lq status{where}")
    say(f"  lq token{where} --tenant acme --scope 'lq:read:*'")
    say("press Ctrl-C to stop")


def _printer() -> Callable[[str], None]:
    lock = threading.Lock()
    gone = threading.Event()

    def say(line: str) -> None:
        with lock:
            if gone.is_set():
                return
            try:
                print(line, flush=True)
            except (OSError, ValueError):
                # the terminal is gone (SIGHUP) or the pipe was closed: carry on stopping
                # quietly; stdout goes to /dev/null so that the final flush cannot fail
                gone.set()
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                    os.close(devnull)

    return say


def _record(plan: _Plan, state: str, redis: EmbeddedRedis | None,
            supervisor: Supervisor) -> Cluster:
    processes = {} if redis is None or redis.pid is None else {"redis": redis.pid}
    processes.update({c.spec.name: c.pid for c in supervisor.children if c.pid is not None})
    cluster = Cluster(
        pid=os.getpid(), started_at=plan.started_at, state=state,
        gateway_urls=plan.gateway_urls, redis_url=plan.redis_url,
        redis_dir=None if redis is None or redis.dir is None else str(redis.dir),
        secret_from=plan.secret_from, processes=processes,
    )
    plan.state.record(cluster)
    return cluster


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        print(f"lq dev: {problem}", file=sys.stderr)
        return 2
    try:
        state = Owner.acquire(state_dir(args.state_dir, os.environ))
    except DevStateError as e:
        print(f"lq dev: {e}", file=sys.stderr)
        return 2
    try:
        problem = _check_ports(args)
        if problem:
            print(f"lq dev: {problem}", file=sys.stderr)
            return 2
        say = _printer()
        stop = _Stop()
        # a closed terminal (SIGHUP) stops everything exactly like Ctrl-C
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, stop.on_signal) for signum in signals}
        try:
            for left in state.sweep():
                say(f"lq dev: removed {left} (left by an lq dev that did not stop)")
            return _serve(args, state, say, stop)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        state.release()


class _Stop:
    """Set by SIGINT, SIGTERM or SIGHUP; polled by the main thread (an `Abort`).

    The handler only stores the signal's name. It runs in the main thread between two
    bytecodes, possibly while that thread holds a lock: the printer's, or the one inside
    `threading.Event.wait`. Printing or `Event.set()` there would wait for that lock
    forever, so the handler takes none, and the main thread sleeps and looks instead.
    """

    def __init__(self) -> None:
        self.signal: str | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signal is None:
            self.signal = signal.Signals(signum).name

    def is_set(self) -> bool:
        return self.signal is not None

    def wait(self, timeout: float) -> bool:
        if self.signal is None:
            time.sleep(timeout)
        return self.signal is not None


def _serve(args: argparse.Namespace, state: Owner, say: Callable[[str], None],
           stop: _Stop) -> int:
    redis: EmbeddedRedis | None = None
    supervisor = Supervisor(say, echo=args.logs, abort=stop)
    code = 0
    try:
        if args.redis_url:
            redis_url = args.redis_url
            say(f"{'redis':<10} {'external':<9} {'':<10}  {redact(redis_url)}")
        else:
            say(f"{'redis':<10} starting")
            redis = EmbeddedRedis(appendonly=True, appendfsync=args.appendfsync,
                                  parent=state.path)
            redis.start()
            redis_url = redis.url
            say(f"{'redis':<10} {'ready':<9} {'pid ' + str(redis.pid):<10}  {redis_url}  "
                f"(embedded, AOF appendfsync {args.appendfsync}, dir {redis.dir})")
        env_secret = os.environ.get("LQ_JWT_SECRET", "")
        plan = _Plan(redis_url, env_secret or state.secret(),
                     "LQ_JWT_SECRET" if env_secret else "state", state, [])
        base = {**os.environ, "LQ_REDIS_URL": redis_url, "LQ_JWT_SECRET": plan.secret}
        gateways = _gateway_specs(args, base)
        plan.gateway_urls.extend(spec.detail for spec in gateways)
        recorded = _record(plan, "starting", redis, supervisor)
        if not (supervisor.start_group(_shard_specs(args.shards, base), args.ready_timeout)
                and supervisor.start_group(gateways, args.ready_timeout)):
            code = 0 if stop.is_set() else 1
            return code
        recorded = _record(plan, "ready", redis, supervisor)
        _banner(say, plan, args)
        while not stop.wait(0.25):
            supervisor.tick()
            if redis is not None and redis.exited() is not None:
                say(f"lq dev: the embedded Redis exited with {redis.exited()}: stopping")
                code = 1
                break
            pids = {c.spec.name: c.pid for c in supervisor.children if c.pid is not None}
            if any(recorded.processes.get(name) != pid for name, pid in pids.items()):
                recorded = _record(plan, "ready", redis, supervisor)  # a child was restarted
        return code
    except (OSError, RuntimeError) as e:  # no redis-server, or it did not start
        say(f"lq dev: {e}")
        code = 1
        return code
    finally:
        if stop.signal is not None:
            say(f"lq dev: {stop.signal}: stopping")
        supervisor.stop([supervisor.of_kind("gateway"), supervisor.of_kind("shard")])
        if redis is not None:
            redis.stop()
            say(f"{'redis':<10} stopped   (its directory is removed)")
        say("lq dev: stopped" + ("" if code == 0 else " with an error"))
