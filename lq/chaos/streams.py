"""The Server-Sent Events and long-polling clients of a chaos run (see `clients`).

Both take their first credential as a single-use ticket (`POST /v1/tickets`), as a
browser would. Invariants:
- SSE: one subscription per stream; each event's id is `<stream>.<seq>`; a new stream
  name is a new life (seq from 1, `reset` first). A stream that ends is resumed on the
  same gateway with `last_event_id`, where the gateway may continue it (same name, seq
  going on) or start it over; when that gateway does not answer, the next one starts a
  new stream;
- poll: one handle per subscription, on the gateway that made it; each request
  acknowledges what was applied (`after`); `410 Gone` or a failed gateway start a new
  handle (a new life) on this gateway or the next;
- a broken subscription is started over at once (a new stream, a new handle);
- a new stream or handle declares the list when it is synced and trusted (`resume=` on
  SSE when it fits a URL, the POST form of poll): a state-diff resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import orjson

from lq.chaos.clients import Client

__all__ = ["PollClient", "SseClient"]

_TIMEOUT = httpx.Timeout(30.0, connect=2.0)


class _HttpClient(Client):
    def __init__(self, *args: Any, http: httpx.AsyncClient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = http
        self.auth = {"Authorization": f"Bearer {self.token}"}

    async def ticket(self, url: str) -> str | None:
        r = await self.http.post(f"{url}/v1/tickets", headers=self.auth, timeout=_TIMEOUT)
        return str(r.json()["ticket"]) if r.status_code == 200 else None

    @property
    def sub(self) -> Any:
        return self.subs[0]

    def q(self) -> str:
        return orjson.dumps(self.sub.query).decode()


class SseClient(_HttpClient):
    transport = "sse"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream = ""  # the stream name of the current life
        self.last_id: str | None = None
        self.declared = False  # the open request declared the list (`resume=`)

    async def _session(self, url: str, stop: asyncio.Event) -> bool:
        served = False
        for _ in range(2):  # resume on this gateway once, then go elsewhere
            try:
                served |= await self._stream(url, stop)
            except (httpx.TransportError, ValueError, KeyError):
                return served
            if stop.is_set():
                break
        return served

    async def _stream(self, url: str, stop: asyncio.Event) -> bool:
        ticket = await self.ticket(url)
        if ticket is None:
            return False
        params = {"q": self.q(), "ticket": ticket}
        if self.last_id:
            params["last_event_id"] = self.last_id
        rows = self.sub.declaration(max_bytes=6000)  # a URL's room
        if rows is not None:
            params["resume"] = orjson.dumps(rows).decode()
        async with self.http.stream("GET", f"{url}/v1/sse", params=params,
                                    timeout=_TIMEOUT) as r:
            if r.status_code != 200:
                return False
            self.connects += 1
            self.declared = rows is not None
            event: dict[str, str] = {}
            async for line in r.aiter_lines():
                if stop.is_set():
                    break
                if line:
                    field, _, value = line.partition(":")
                    event[field] = value.removeprefix(" ")
                    continue
                if "data" in event and not self._event(event):
                    self.last_id = None  # broken: start over on a new stream
                    break
                event = {}
        return True

    def _event(self, event: dict[str, str]) -> bool:
        """Apply one event; False when the subscription broke."""
        m = orjson.loads(event["data"])
        if m.get("type") != "delta":
            if m.get("type") == "error":
                self.note_error(m)
            return True
        name, _, _ = event.get("id", "").rpartition(".")
        if name and name != self.stream:  # a new stream: a new life, resumed if declared
            self.stream = name
            self.sub.new_life(keep=self.declared)
            self.sub.declared += self.declared
        self.sub.apply(m, time.time())
        self.last_id = event.get("id") or self.last_id
        return not self.sub.broken


class PollClient(_HttpClient):
    transport = "poll"

    async def _session(self, url: str, stop: asyncio.Event) -> bool:
        served = False
        with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
            for _ in range(1000):  # new handles on this gateway (410, broken lists)
                handle = await self._open(url)
                if handle is None:
                    return served
                served = True
                await self._poll(url, handle, stop)
                if stop.is_set():
                    break
        return served

    async def _open(self, url: str) -> str | None:
        ticket = await self.ticket(url)
        if ticket is None:
            return None
        rows = self.sub.declaration()
        if rows is None:
            r = await self.http.get(f"{url}/v1/poll", timeout=_TIMEOUT,
                                    params={"q": self.q(), "ticket": ticket, "wait": "5"})
        else:  # the POST form: a declaration of any size
            r = await self.http.post(f"{url}/v1/poll", timeout=_TIMEOUT,
                                     params={"ticket": ticket},
                                     json={"query": self.sub.query, "wait": 5,
                                           "resume": {"rows": rows}})
        if r.status_code != 200:
            return None
        self.connects += 1
        self.sub.new_life(keep=rows is not None)
        self.sub.declared += rows is not None
        body = r.json()
        self._apply(body.get("messages", []))
        return str(body["poll"])

    def _apply(self, messages: list[dict[str, Any]]) -> None:
        now = time.time()
        for m in messages:
            if m.get("type") == "delta":
                self.sub.apply(m, now)
            elif m.get("type") == "error":
                self.note_error(m)

    async def _poll(self, url: str, handle: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.sub.broken:
                with contextlib.suppress(httpx.TransportError):
                    await self.http.delete(f"{url}/v1/poll", params={"poll": handle},
                                           headers=self.auth, timeout=_TIMEOUT)
                return
            await self.reading.wait()
            r = await self.http.get(f"{url}/v1/poll", headers=self.auth, timeout=_TIMEOUT,
                                    params={"poll": handle, "after": str(self.sub.seq),
                                            "wait": "5"})
            if r.status_code == 410:
                return
            if r.status_code != 200:
                await asyncio.sleep(0.2)
                continue
            self._apply(r.json().get("messages", []))
