"""The HTTP data API (PROTOCOL.md section 7) for the Python client, on httpx.

Invariant: every answer other than 2xx becomes `LiveError` with the protocol's error
code, message and status (and `version` for a failed precondition); a gateway that
cannot be reached is skipped for the next URL given, and only when none answers does
the call fail (`OSError`). Nothing here imports the server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["HttpApi", "LiveError"]


class LiveError(Exception):
    """An error answer of the server (HTTP or live): `code` is the protocol's."""

    def __init__(self, code: str, message: str, sub: str | None = None,
                 status: int | None = None, version: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.sub = sub
        self.status = status
        self.version = version


class HttpApi:
    """Row and query calls; subclasses supply `token()`."""

    def __init__(self, urls: list[str], timeout: float) -> None:
        if not urls:
            raise ValueError("give at least one gateway URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = timeout
        self.http: httpx.AsyncClient | None = None
        self._current = 0

    async def token(self) -> str:
        raise NotImplementedError

    async def __aenter__(self) -> HttpApi:
        self.http = httpx.AsyncClient(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def request(
        self, method: str, path: str, body: Any = None, *,
        params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
    ) -> Any:
        """One call; the decoded JSON answer, or LiveError / OSError."""
        if self.http is None:
            raise RuntimeError("use the client as `async with LiveClient(...) as client`")
        sent = {"Authorization": f"Bearer {await self.token()}", **(headers or {})}
        content = None if body is None else json.dumps(body)
        if content is not None:
            sent["Content-Type"] = "application/json"
        last: Exception | None = None
        for attempt in range(len(self.urls)):
            url = self.urls[(self._current + attempt) % len(self.urls)]
            try:
                r = await self.http.request(method, url + path, content=content, params=params,
                                            headers=sent)
            except httpx.TransportError as e:
                last = e
                continue
            self._current = (self._current + attempt) % len(self.urls)
            data = r.json() if r.content else None
            if r.status_code >= 400:
                err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
                raise LiveError(err.get("code", "internal"), err.get("message", r.text), None,
                                r.status_code, err.get("version"))
            return data
        raise OSError(f"no gateway answered: {last!r}")

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
        except LiveError as e:
            if e.status == 404:
                return None
            raise
        return result

    async def query(self, entity: str, **query: Any) -> dict[str, Any]:
        """One page: `where`, `sort`, `limit`, `after` as in PROTOCOL.md section 2."""
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/entities/{quote(entity, safe='')}/query", query)
        return result

    async def batch(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self.request("POST", "/v1/batch", {"ops": ops})
        return list(result["results"])
