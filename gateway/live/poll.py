"""`/v1/poll`: long polling (PROTOCOL.md section 6).

`GET ?q=` or `POST` (a JSON body, for declarations too long for a URL) opens a handle;
`GET ?poll=` continues it; `DELETE ?poll=` ends it.

A handle is one subscription with its outbox, on the gateway that made it, for the
tenant that made it. Invariants:
- messages are numbered when a reply takes them and kept until acknowledged (`after`),
  so a lost reply is repeated by polling with the same `after`; at most one reply's
  worth (1000) is kept unacknowledged, and the outbox beyond it is bounded as for any
  connection (past its bounds the subscription catches up with `reset`);
- `wait` is clamped to 0-60 s; a newer request on the same handle ends an older one's
  wait; an unknown, expired, foreign (tenant) or other gateway's handle is `410`;
- a handle idle (no request in progress) for `poll_lease` seconds is ended by the
  reaper, a loop of the live service (so it belongs to the lifespan's TaskGroup);
- only an opening request may declare rows (`resume`): its first reply is then the
  state-diff resume (or a `resume_miss` reset and snapshot) instead of reset + snapshot;
  GET and POST open through one path, and differ only in where the inputs are read.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cluster.errors import InvalidQuery, InvalidRequest

from ..auth import Principal
from ..errors import Gone, Overloaded
from ..responses import json_response
from ..routing import RawRoute
from . import wire
from .inputs import caller, check_live_params, query_param, resume_param
from .outbox import Outbox
from .service import LiveService
from .subscription import Subscription

__all__ = ["POLL_PATH", "PollHandles", "ReadJson", "poll_routes"]

POLL_PATH = "/v1/poll"
MAX_REPLY = 1000
MAX_WAIT = 60.0
_PARAMS = frozenset({"q", "poll", "after", "wait", "token", "ticket", "resume"})
_BODY = frozenset({"query", "resume", "wait"})

ReadJson = Callable[[Request, int, str], Awaitable[Any]]
"""Reads a request's JSON body of at most so many bytes (`gateway.http.body.read_json`,
passed in by the app: `live` does not import `http`)."""


class PollHandle:
    def __init__(self, name: str, tenant: str, outbox: Outbox) -> None:
        self.name = name
        self.tenant = tenant
        self.outbox = outbox
        self.sub: Subscription | None = None
        self.unacked: deque[tuple[int, bytes]] = deque()
        self.acked = 0
        self.last_seen = time.monotonic()
        self.busy = 0
        self.generation = 0
        self.lock = asyncio.Lock()

    def acknowledge(self, after: int) -> None:
        assert self.sub is not None
        if after > self.sub.seq:
            raise InvalidRequest(f"after={after} is beyond the last seq sent ({self.sub.seq})")
        if after < self.acked:
            raise InvalidRequest(
                f"after={after} is below a seq already acknowledged ({self.acked})"
            )
        while self.unacked and self.unacked[0][0] <= after:
            self.unacked.popleft()
        self.acked = after

    def take(self, room: int, until_synced: bool) -> tuple[list[bytes], bool]:
        """Numbered messages for a reply (kept until acknowledged); whether synced came."""
        out: list[bytes] = []
        synced = False
        for op, seq, data in self.outbox.take(room, 8 * 1024 * 1024, until_synced):
            if seq:
                self.unacked.append((seq, data))
                out.append(data)
                synced = synced or op == "synced"
        return out, synced


class PollHandles:
    def __init__(self, live: LiveService) -> None:
        self.live = live
        self.lease = live.config.poll_lease
        self.by_name: dict[str, PollHandle] = {}

    def get(self, name: str, tenant: str) -> PollHandle:
        handle = self.by_name.get(name)
        if handle is None or handle.tenant != tenant or self.live.draining:
            raise Gone("no such poll handle on this gateway (unknown, expired, or made "
                       "elsewhere); open a new one with ?q=")
        return handle

    async def remove(self, handle: PollHandle) -> None:
        if self.by_name.get(handle.name) is handle:
            del self.by_name[handle.name]
        handle.generation += 1
        handle.outbox.wake.set()
        if handle.sub is not None:
            await self.live.unsubscribe(handle.sub)

    def end_all(self) -> None:
        for handle in self.by_name.values():
            handle.generation += 1
            handle.outbox.wake.set()
        self.by_name.clear()

    async def reap_once(self) -> None:
        """One turn of the reaper (a live service loop): a second's sleep, then end the
        handles idle for `poll_lease`."""
        await asyncio.sleep(1.0)
        now = time.monotonic()
        idle = [h for h in self.by_name.values()
                if not h.busy and now - h.last_seen > self.lease]
        for handle in idle:
            await self.remove(handle)


def _clamped(value: float) -> float:
    return 0.0 if math.isnan(value) else min(MAX_WAIT, max(0.0, value))


def _wait(raw: str | None) -> float:
    if raw is None:
        return 25.0
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"wait is a number of seconds (0-60), got {raw[:40]!r}") from None
    return _clamped(value)


def _opening(body: Any) -> tuple[Any, list[Any] | None, float]:
    """A POST body's query, declared rows and wait."""
    if not isinstance(body, dict):
        raise InvalidRequest('the body is a JSON object {"query": ..., "resume": {"rows": '
                             '[...]}, "wait": 25}')
    unknown = sorted(set(body) - _BODY)
    if unknown:
        raise InvalidRequest(f"unknown member {unknown[0]!r} (accepted: query, resume, wait)")
    if "query" not in body:
        raise InvalidQuery("query", 'send the query as the body\'s "query"')
    try:
        resume = wire.resume_rows(body.get("resume"))
    except wire.WireError as e:
        raise InvalidRequest(str(e)) from None
    wait = body.get("wait", 25.0)
    if type(wait) not in (int, float):
        raise InvalidRequest("wait is a number of seconds (0-60)")
    return body["query"], resume, _clamped(float(wait))


def _after(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidRequest(f"after is the last seq received (an integer >= 0), got {raw[:40]!r}")
    return int(raw)


async def _reply(handle: PollHandle, wait: float, opening: bool) -> Response:
    handle.busy += 1
    handle.generation += 1
    handle.outbox.wake.set()  # an older request's wait ends: this one answers now
    generation = handle.generation
    deadline = time.monotonic() + wait
    try:
        async with handle.lock:
            messages = [data for _, data in handle.unacked][:MAX_REPLY]
            while True:
                got, synced = handle.take(MAX_REPLY - len(messages), opening)
                messages += got
                done = synced if opening else bool(messages)
                left = deadline - time.monotonic()
                if done or len(messages) >= MAX_REPLY or left <= 0:
                    break
                if handle.generation != generation:
                    break
                handle.outbox.wake.clear()
                try:
                    await asyncio.wait_for(handle.outbox.wake.wait(), left)
                except TimeoutError:
                    pass
    finally:
        handle.busy -= 1
        handle.last_seen = time.monotonic()
    body = b'{"poll":%b,"messages":[%b]}' % (orjson.dumps(handle.name), b",".join(messages))
    return Response(body, media_type="application/json")


def poll_routes(live: LiveService, handles: PollHandles, read_json: ReadJson
                ) -> list[BaseRoute]:
    g = live.config

    async def open_(who: Principal, raw: Any, resume: list[Any] | None,
                    wait: float) -> Response:
        if live.draining:
            raise Overloaded("the gateway is shutting down; poll another")
        if len(handles.by_name) >= g.max_connections:
            raise Overloaded("this gateway holds its maximum of poll handles; try later")
        live.check_room(0)
        handle = PollHandle(secrets.token_urlsafe(16), who.tenant, live.new_outbox())
        handle.sub = await live.open(who, handle.name, raw, handle.outbox, resume=resume)
        handles.by_name[handle.name] = handle
        live.announce(handle.sub)
        return await _reply(handle, wait, opening=True)

    async def get(request: Request) -> Response:
        params = request.query_params
        check_live_params(request, _PARAMS)
        who, _ = await caller(live.auth, live.tickets, request)
        wait = _wait(params.get("wait"))
        name = params.get("poll")
        if name is not None:
            if "q" in params or "resume" in params:
                raise InvalidRequest("send either q (open, with resume if any) or poll "
                                     "(continue), not both")
            handle = handles.get(name, who.tenant)
            handle.acknowledge(_after(params.get("after"), handle.acked))
            return await _reply(handle, wait, opening=False)
        if "after" in params:
            raise InvalidRequest("after goes with poll=<handle>")
        _, raw = query_param(request)
        return await open_(who, raw, resume_param(request), wait)

    async def post(request: Request) -> Response:
        check_live_params(request, frozenset({"token", "ticket"}))
        who, _ = await caller(live.auth, live.tickets, request)
        raw, resume, wait = _opening(await read_json(request, g.max_body_bytes, ""))
        return await open_(who, raw, resume, wait)

    async def delete(request: Request) -> Response:
        check_live_params(request, frozenset({"poll", "token", "ticket"}))
        who, _ = await caller(live.auth, live.tickets, request)
        name = request.query_params.get("poll")
        if name is None:
            raise InvalidRequest("send the handle to end as ?poll=<handle>")
        await handles.remove(handles.get(name, who.tenant))
        return json_response({"poll": name, "ended": True})

    by_method = {"GET": get, "POST": post, "DELETE": delete}

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method](request)

    return [RawRoute(POLL_PATH, dispatch, methods=["GET", "POST", "DELETE"])]
