"""The partition change log: entry contents and order, reads, trim detection, `mark`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cluster import codec
from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import ChangeLog, LogTrimmed, RedisClient, RowStore, WriteOp, run_batch
from tests.storage_helpers import KEYS, TENANT, log_entries, open_client

P = partition_of(TENANT, "tasks")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def test_each_write_appends_one_entry_in_order(client: RedisClient) -> None:
    settings = StorageSettings()
    store, log = RowStore(client, settings), ChangeLog(client, settings)
    start, _ = await log.mark(P)
    writes = [
        await store.put(TENANT, "tasks", "a", {"n": 1}),
        await store.put(TENANT, "tasks", "b", {"n": 2, "s": "x" * 2000}),  # compressed
        await store.patch(TENANT, "tasks", "a", {"m": 3}),
        await store.delete(TENANT, "tasks", "b"),
        await store.put(TENANT, "tasks", "b", {"n": 4}, ttl_ms=60_000),
    ]
    entries = [e for e in await log_entries(client, P) if e[1].get("o") != b"n"]
    assert [sid for sid, _ in entries] == [w.stream_id for w in writes]
    expected = [
        ("a", b"p", {"n": 1}),
        ("b", b"p", {"n": 2, "s": "x" * 2000}),
        ("a", b"p", {"n": 1, "m": 3}),
        ("b", b"d", None),
        ("b", b"p", {"n": 4}),
    ]
    for (_, fields), w, (rid, op, values) in zip(entries, writes, expected, strict=True):
        assert fields["t"] == TENANT.encode() and fields["e"] == b"tasks"
        assert fields["i"] == rid.encode() and fields["o"] == op
        assert int(fields["v"]) == w.version
        if values is None:
            assert set(fields) == {"t", "e", "i", "v", "o"}
        else:
            assert set(fields) == {"t", "e", "i", "v", "o", "d"}
            assert codec.decode(fields["d"]) == values
    assert entries[1][1]["d"][:1] == b"Z"

    got = await log.read(P, start)
    assert [(c.id, c.version, c.values, c.stream_id) for c in got.changes] == [
        (rid, w.version, values, w.stream_id)
        for w, (rid, _, values) in zip(writes, expected, strict=True)
    ]
    assert all(c.tenant == TENANT and c.entity == "tasks" for c in got.changes)
    assert [c.deleted for c in got.changes] == [False, False, False, True, False]
    assert got.position == writes[-1].stream_id
    # paging with a small count gives the same changes
    paged, position = [], start
    while True:
        page = await log.read(P, position, count=2)
        if page.position == position:
            break
        paged.extend(page.changes)
        position = page.position
    assert paged == got.changes
    assert (await log.read_to_end(P, start, count=2)).changes == got.changes


async def test_batch_writes_are_logged_in_batch_order(client: RedisClient) -> None:
    settings = StorageSettings()
    store, log = RowStore(client, settings), ChangeLog(client, settings)
    start, _ = await log.mark(P)
    ops = [WriteOp("put", "tasks", f"r{i}", {"i": i}) for i in range(20)]
    ops += [WriteOp("delete", "tasks", f"r{i}") for i in range(0, 20, 3)]
    results = await run_batch(store, TENANT, ops)
    got = await log.read_to_end(P, start)
    assert [c.stream_id for c in got.changes] == [r.stream_id for r in results]  # type: ignore[union-attr]
    versions = [c.version for c in got.changes]
    assert versions == sorted(versions)


async def test_mark_on_an_empty_log(client: RedisClient) -> None:
    log = ChangeLog(client, StorageSettings())
    position, now = await log.mark(P)
    seconds, _ = await client.time()
    assert abs(now - int(seconds) * 1000) < 5_000
    assert await client.xlen(KEYS.events(P)) == 1  # a no-op marker
    again, _ = await log.mark(P)
    assert again == position and await client.xlen(KEYS.events(P)) == 1
    assert await log.entry_exists(P, position)
    read = await log.read(P, position)
    assert read.changes == [] and read.position == position
    # a reader from before the marker skips the marker itself
    read = await log.read(P, "0-0")
    assert read.changes == [] and read.position == position


async def fill_trimmed_log(client: RedisClient, rows: int = 600) -> tuple[str, str]:
    """A log with MAXLEN ~ 10 after `rows` writes: (first position, a recent position)."""
    settings = StorageSettings(log_maxlen=10)
    store, log = RowStore(client, settings), ChangeLog(client, settings)
    first, _ = await log.mark(P)
    results = await run_batch(
        store, TENANT, [WriteOp("put", "tasks", f"r{i}", {"i": i}) for i in range(rows)]
    )
    assert await client.xlen(KEYS.events(P)) < rows  # trimming happened
    assert not await log.entry_exists(P, first)
    recent = results[-5].stream_id  # type: ignore[union-attr]
    return first, recent


async def test_read_after_a_trimmed_position_raises(client: RedisClient) -> None:
    first, recent = await fill_trimmed_log(client)
    log = ChangeLog(client, StorageSettings(log_maxlen=10))
    with pytest.raises(LogTrimmed):
        await log.read(P, first, count=5)
    with pytest.raises(LogTrimmed):
        await log.read_to_end(P, first, count=5)
    ok = await log.read(P, recent, count=5)
    assert [c.id for c in ok.changes] == [f"r{i}" for i in range(596, 600)]
    ok = await log.read(P, recent, count=4)
    assert len(ok.changes) == 4


async def test_read_with_count_above_maxlen_still_detects_a_trim(client: RedisClient) -> None:
    """With COUNT >= MAXLEN a short read proves nothing: the position must be checked."""
    first, recent = await fill_trimmed_log(client)
    log = ChangeLog(client, StorageSettings(log_maxlen=10))
    with pytest.raises(LogTrimmed):
        await log.read(P, first, count=1000)
    with pytest.raises(LogTrimmed):
        await log.read_to_end(P, first)
    assert len((await log.read(P, recent, count=1000)).changes) == 4


async def test_load_collection_retries_nothing_when_untrimmed(client: RedisClient) -> None:
    settings = StorageSettings()
    store, log = RowStore(client, settings), ChangeLog(client, settings)
    await store.put(TENANT, "tasks", "a", {"n": 1})
    await store.put(TENANT, "other", "z", {"n": 1})
    loaded = await log.load_collection(TENANT, "tasks")
    assert [(r.id, r.values) for r in loaded.rows] == [("a", {"n": 1})]
    assert loaded.changes == []
    w = await store.put(TENANT, "tasks", "b", {"n": 2})
    if partition_of(TENANT, "other") == P:
        await store.put(TENANT, "other", "z", {"n": 2})
    tail = await log.read_to_end(P, loaded.position)
    mine = [c for c in tail.changes if c.entity == "tasks"]
    assert [(c.id, c.version) for c in mine] == [("b", w.version)]
