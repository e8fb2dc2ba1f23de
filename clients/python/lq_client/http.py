"""The HTTP data API (PROTOCOL.md section 7) of the client, on httpx.

Invariants: every answer of an lq gateway other than 2xx raises the typed error of its
code (`errors.error_for`); a gateway that cannot be reached (refused, unknown host,
connect timeout) or whose answer is not an lq answer (not JSON, no error object) is
skipped for the next URL given, and when none answers the call raises `Unavailable` at
once. A request that may have reached a gateway (a read timeout, a dropped connection)
is never sent again to another one: it raises `Unavailable`. A 401 is retried once, and
only when the token callback then returns a different token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson

from ._token import TokenSource, fetch_token
from .errors import LiveError, NotFound, Unavailable, error_for

__all__ = ["HttpApi"]


class _NotLq(Exception):
    """What answered is not an lq gateway (the next URL is tried)."""


class HttpApi:
    """Row and query calls against the first gateway of `urls` that answers."""

    def __init__(self, urls: list[str], token: TokenSource, timeout: float,
                 connect_timeout: float) -> None:
        if not urls:
            raise ValueError("give at least one gateway URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.token_source = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.http: httpx.AsyncClient | None = None
        self._current = 0

    async def token(self) -> str:
        """The token to send now (from the string or the callback)."""
        return await fetch_token(self.token_source)

    async def __aenter__(self) -> HttpApi:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, self.connect_timeout))
        self.http = httpx.AsyncClient(timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def request(
        self, method: str, path: str, body: Any = None, *,
        params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
    ) -> Any:
        """One call: the decoded JSON answer, or a `LiveError` (`Unavailable` when no
        gateway given answered)."""
        if self.http is None:
            raise RuntimeError("use the client as `async with LiveClient(...) as client`")
        content = None if body is None else orjson.dumps(body)
        sent = dict(headers or {})
        if content is not None:
            sent["Content-Type"] = "application/json"
        token = await self.token()
        failures: list[str] = []
        for attempt in range(len(self.urls)):
            index = (self._current + attempt) % len(self.urls)
            url = self.urls[index]
            try:
                try:
                    answer = await self._call(method, url + path, content, params, sent, token)
                except LiveError as e:
                    fresh = await self._fresh_token(e, token)
                    if fresh is None:
                        raise
                    token = fresh
                    answer = await self._call(method, url + path, content, params, sent, token)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol,
                    _NotLq) as e:
                failures.append(f"{url}: {e or type(e).__name__}")
                continue
            except httpx.TransportError as e:  # it may have arrived: do not send it again
                raise Unavailable("unavailable", f"{url}: {e!r}") from e
            self._current = index
            return answer
        raise Unavailable("unavailable", "no lq gateway answered: " + "; ".join(failures))

    async def _call(self, method: str, url: str, content: bytes | None,
                    params: dict[str, str] | None, headers: dict[str, str], token: str) -> Any:
        assert self.http is not None
        r = await self.http.request(method, url, content=content, params=params,
                                    headers={**headers, "Authorization": f"Bearer {token}"})
        try:
            data = orjson.loads(r.content) if r.content else None
        except orjson.JSONDecodeError:
            raise _NotLq(f"HTTP {r.status_code} with a body that is not JSON") from None
        if r.status_code < 400:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            raise _NotLq(f"HTTP {r.status_code} without an lq error object")
        version, outcome = error.get("version"), error.get("outcome")
        raise error_for(error["code"], str(error.get("message", "")), status=r.status_code,
                        version=version if isinstance(version, int) else None,
                        outcome=outcome if isinstance(outcome, str) else None)

    async def _fresh_token(self, refused: LiveError, token: str) -> str | None:
        """A new token to retry a 401 with, when the callback gives one."""
        if refused.status != 401 or isinstance(self.token_source, str):
            return None
        fresh = await self.token()
        return fresh if fresh != token else None

    @staticmethod
    def _row_path(entity: str, row_id: str) -> str:
        return f"/v1/entities/{quote(entity, safe='')}/rows/{quote(row_id, safe='')}"

    @staticmethod
    def _preconditions(if_match: int | None, create_only: bool) -> dict[str, str]:
        if if_match is not None:
            return {"If-Match": f'"{if_match}"'}
        return {"If-None-Match": "*"} if create_only else {}

    async def put(self, entity: str, row_id: str, row: dict[str, Any], *,
                  ttl: float | None = None, if_match: int | None = None,
                  create_only: bool = False) -> dict[str, Any]:
        params = {"ttl": repr(ttl)} if ttl is not None else None
        result: dict[str, Any] = await self.request(
            "PUT", self._row_path(entity, row_id), row, params=params,
            headers=self._preconditions(if_match, create_only))
        return result

    async def patch(self, entity: str, row_id: str, patch: dict[str, Any], *,
                    if_match: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PATCH", self._row_path(entity, row_id), patch,
            headers=self._preconditions(if_match, False))
        return result

    async def delete(self, entity: str, row_id: str, *,
                     if_match: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "DELETE", self._row_path(entity, row_id),
            headers=self._preconditions(if_match, False))
        return result

    async def get(self, entity: str, row_id: str) -> dict[str, Any] | None:
        """The row (`{"id","version","row"}`), or None when there is none."""
        try:
            result: dict[str, Any] = await self.request("GET", self._row_path(entity, row_id))
        except NotFound:
            return None
        return result

    async def query(self, entity: str, **query: Any) -> dict[str, Any]:
        """One page: `where`, `sort`, `limit`, `after` as in PROTOCOL.md section 2."""
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/entities/{quote(entity, safe='')}/query", query)
        return result

    async def batch(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self.request("POST", "/v1/batch", {"ops": ops})
        return list(result["results"])
