"""Pipelined batches of writes: each op its own result or error, in order, not atomic.

Ops are validated first (a bad op fails alone). Patches read their rows in one
pipeline, then every write goes out in a second pipeline; a patch that lost a race (to
anyone else) is retried alone through `RowStore.patch`. Ops on one row apply in batch
order: one pipeline keeps its order per node, a row lives on one node, and a batch that
patches a row it also writes elsewhere is cut into rounds (see `_rounds`), so a patch
sees the ops before it and no op after it overtakes its retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cluster.errors import InvalidRequest, LiveQueryError, NotFound, VersionConflict
from cluster.partition import partition_of

from . import _lua
from ._format import check_names, parse_stored
from .connection import is_cluster
from .merge import merge_patch
from .rows import RowStore, WriteResult, interpret

__all__ = ["BatchResult", "WriteOp", "run_batch"]

_PUT = _lua.load("put")
_DELETE = _lua.load("delete")
_GET = _lua.load("get")

BatchResult = WriteResult | LiveQueryError


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One op of a batch; `row` is the values (put) or the merge patch (patch)."""

    op: Literal["put", "patch", "delete"]
    entity: str
    id: str
    row: Any = None
    ttl_ms: int | None = None
    if_match: int | None = None


Call = tuple[_lua.Script, list[str], list[Any]]


def _call(store: RowStore, tenant: str, op: WriteOp, current: Any) -> Call:
    if op.op == "put":
        keys, args = store.put_call(
            tenant, op.entity, op.id, op.row, if_match=op.if_match, ttl_ms=op.ttl_ms
        )
        return _PUT, keys, args
    if op.op == "delete":
        keys, args = store.delete_call(tenant, op.entity, op.id, if_match=op.if_match)
        return _DELETE, keys, args
    if op.op != "patch":
        raise InvalidRequest(f"unknown op {op.op!r}: put, patch or delete")
    if current is None:
        raise VersionConflict(None) if op.if_match is not None else _not_found(op.id)
    stored = parse_stored(op.id, current)
    if op.if_match is not None and stored.version != op.if_match:
        raise VersionConflict(stored.version)
    merged = merge_patch(stored.values, op.row)
    ttl = -1 if op.ttl_ms is None else op.ttl_ms
    keys, args = store.put_call(
        tenant, op.entity, op.id, merged, if_match=stored.version, ttl_ms=ttl
    )
    return _PUT, keys, args


def _not_found(row_id: str) -> LiveQueryError:
    return NotFound(f"no row {row_id!r}")


async def _execute(store: RowStore, calls: list[Call]) -> list[Any]:
    if not calls:
        return []
    cluster = is_cluster(store.client)
    pipe: Any = store.client.pipeline(transaction=False)
    skip = 0
    for script in {id(c[0]): c[0] for c in calls}.values():
        skip += script.prepare(pipe, cluster)
    for script, keys, args in calls:
        script.queue(pipe, keys, args, cluster)
    replies = await pipe.execute(raise_on_error=False)
    return list(replies[skip:])


async def _read_patched(store: RowStore, tenant: str, ops: list[WriteOp]) -> dict[int, Any]:
    reads: list[tuple[int, Call]] = []
    for i, op in enumerate(ops):
        if op.op == "patch":
            try:
                check_names(tenant, op.entity, op.id)
            except LiveQueryError:
                continue  # reported when the write call is built
            key = store.keys.rows(partition_of(tenant, op.entity), tenant, op.entity)
            reads.append((i, (_GET, [key], [op.id])))
    replies = await _execute(store, [c for _, c in reads])
    return {i: reply for (i, _), reply in zip(reads, replies, strict=True)}


def _rounds(ops: list[WriteOp]) -> list[list[int]]:
    """Split a batch into rounds that keep each row's ops in batch order.

    A patch reads its row before its round's writes go out, so it must not follow
    another op on its row in the same round; and a patch that lost a race is retried
    after its round, so no op on its row may follow it in the same round. Batches whose
    rows are distinct are one round.
    """
    rounds: list[list[int]] = []
    touched: dict[tuple[str, str], bool] = {}  # row -> patched in this round
    for i, op in enumerate(ops):
        row = (str(op.entity), str(op.id))
        if rounds and row in touched and (op.op == "patch" or touched[row]):
            rounds.append([])
            touched = {}
        if not rounds:
            rounds.append([])
        rounds[-1].append(i)
        touched[row] = touched.get(row, False) or op.op == "patch"
    return rounds


async def run_batch(store: RowStore, tenant: str, ops: list[WriteOp]) -> list[BatchResult]:
    """Apply `ops` for `tenant`; one result (or error) per op, in order."""
    results: list[BatchResult | None] = [None] * len(ops)
    for indexes in _rounds(ops):
        chosen = [ops[i] for i in indexes]
        for i, result in zip(indexes, await _run_round(store, tenant, chosen), strict=True):
            results[i] = result
    done = [r for r in results if r is not None]
    assert len(done) == len(ops)
    return done


async def _run_round(store: RowStore, tenant: str, ops: list[WriteOp]) -> list[BatchResult]:
    current = await _read_patched(store, tenant, ops)
    results: list[BatchResult | None] = [None] * len(ops)
    pending: list[tuple[int, Call]] = []
    for i, op in enumerate(ops):
        try:
            pending.append((i, _call(store, tenant, op, current.get(i))))
        except LiveQueryError as e:
            results[i] = e
    replies = await _execute(store, [c for _, c in pending])
    for (i, _), reply in zip(pending, replies, strict=True):
        op = ops[i]
        if isinstance(reply, Exception):
            raise reply
        try:
            results[i] = interpret(op.id, reply)
        except VersionConflict as e:
            results[i] = e
            if op.op == "patch" and op.if_match is None:
                results[i] = await _retry_patch(store, tenant, op)
        except LiveQueryError as e:
            results[i] = e
    return [r for r in results if r is not None]


async def _retry_patch(store: RowStore, tenant: str, op: WriteOp) -> BatchResult:
    try:
        return await store.patch(tenant, op.entity, op.id, op.row, ttl_ms=op.ttl_ms)
    except LiveQueryError as e:
        return e
