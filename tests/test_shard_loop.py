"""A shard's event loop (`LQ_LOOP`): uvloop by default when installed, asyncio on request,
bad choices refused before anything starts; on either loop a shard serves and drains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cluster.settings import ShardSettings
from lq._loop import loop_factory
from tests.shard_cluster import collections_of, shard_cluster

pytestmark = pytest.mark.timeout(60)


def test_choices_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="loop: choose from auto, asyncio, uvloop"):
        ShardSettings(loop="trio")
    with pytest.raises(ValueError, match="loop: choose from"):
        loop_factory("Uvloop")
    assert loop_factory("auto")[0] == "uvloop"  # uvicorn[standard] installs it on Linux
    assert loop_factory("asyncio")[0] == "asyncio"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert loop_factory("auto")[0] == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        loop_factory("uvloop")


def _lq_shard(env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (f"{prelude}import sys, runpy; sys.argv = ['lq', 'shard']; "
            "runpy.run_module('lq', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=30)


def test_lq_shard_refuses_a_bad_loop() -> None:
    base = {"PATH": "/usr/bin:/bin", "LQ_REDIS_URL": "redis://127.0.0.1:9/0", "LQ_HTTP_PORT": "0"}
    bad = _lq_shard({**base, "LQ_LOOP": "trio"})
    assert bad.returncode == 2, bad.stderr
    assert "lq shard: loop: choose from auto, asyncio, uvloop" in bad.stderr
    missing = _lq_shard({**base, "LQ_LOOP": "uvloop"}, "import sys; sys.modules['uvloop'] = None; ")
    assert missing.returncode == 2, missing.stderr
    assert "lq shard: loop: uvloop is not installed" in missing.stderr


async def test_each_loop_serves_and_drains(standalone_url: str, tmp_path: Path) -> None:
    collections = collections_of(6, ["tasks"])
    async with shard_cluster(standalone_url, tmp_path, ["s0"]) as c:
        c.fleet.start("s1", {"LQ_LOOP": "asyncio"})
        await c.wait_balanced(["s0", "s1"])
        await c.random_writes(collections, 60)
        await c.subscribe_many(collections, 24)
        await c.random_writes(collections, 60)
        await c.converge(timeout=15)
        c.assert_clean()
        loops = {p.shard_id: e["loop"] for p in c.fleet.history for e in p.events()
                 if e.get("event") == "starting"}
        assert loops == {"s0": "uvloop", "s1": "asyncio"}
        for shard_id in ("s0", "s1"):  # SIGTERM drains on either loop (exit 0)
            c.fleet[shard_id].terminate()
            assert await c.fleet[shard_id].wait_exit(10) == 0
            assert any(e.get("event") == "stopped" for e in c.fleet[shard_id].events())
