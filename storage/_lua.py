"""Lua scripts: loaded once from `storage/lua/`, called by SHA with a fallback.

Single calls use EVALSHA and fall back to EVAL on NOSCRIPT (a restarted or flushed
server). Pipelines on standalone Redis start with one SCRIPT LOAD per script they use,
so every EVALSHA after it in the same pipeline finds its script; Redis Cluster
pipelines (where redis-py refuses EVALSHA) send EVAL.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from .connection import RedisClient

__all__ = ["Script", "load"]


class Script:
    """One Lua script from the package's `lua/` folder."""

    __slots__ = ("body", "name", "sha")

    def __init__(self, name: str) -> None:
        self.name = name
        self.body = resources.files("storage").joinpath(f"lua/{name}.lua").read_text()
        self.sha = hashlib.sha1(self.body.encode()).hexdigest()

    async def __call__(self, client: RedisClient, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.body, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: list[str], args: list[Any], cluster: bool) -> None:
        """Queue one call on a pipeline (see `prepare` for standalone pipelines)."""
        if cluster:
            pipe.eval(self.body, len(keys), *keys, *args)
        else:
            pipe.evalsha(self.sha, len(keys), *keys, *args)

    def prepare(self, pipe: Any, cluster: bool) -> int:
        """Queue a SCRIPT LOAD on a standalone pipeline; returns how many replies it adds."""
        if cluster:
            return 0
        pipe.script_load(self.body)
        return 1


_cache: dict[str, Script] = {}


def load(name: str) -> Script:
    """The script `name` (cached per process)."""
    script = _cache.get(name)
    if script is None:
        script = _cache[name] = Script(name)
    return script
