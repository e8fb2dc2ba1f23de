"""One simulated subscription: applies PROTOCOL.md section 3 messages and records every
violation (see `lq.bench._simgateway` for the rules of the gateway around it)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.delivery import Phase, SubFence

__all__ = ["Decoded", "Item", "SimSub", "item_of"]

@dataclass(slots=True)
class Item:
    id: str
    version: int
    row: dict[str, Any]
    cursor: str | None = None


@dataclass
class SimSub:
    """One subscription as the gateway and its client see it."""

    rid: str
    p: int
    tenant: str
    query: dict[str, Any]
    created_at: float
    mode: str = "window"
    limit: int | None = None
    active: bool = True
    # wire state: the fence is the shipped gateway's (`gateway.delivery`)
    fence: SubFence = field(default_factory=SubFence)
    asking: bool = True  # a subscribe, reanchor or resync is out and unanswered
    refresh: bool = False  # the next ask is a `resync` even before any reset
    next_limit: int | None = None  # a reanchor's limit, taken with its reset
    asked_at: float = 0.0
    asks: int = 0
    resyncs: int = 0
    # client state
    seq: int = 0
    synced: bool = False
    truncated: bool = False
    items: list[Item] = field(default_factory=list)
    matched: dict[str, Item] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    since_reset: dict[str, int] = field(default_factory=dict)
    resets: int = 0
    reset_log: list[tuple[float, str, int]] = field(default_factory=list)  # (t, shard, epoch)
    synced_at: float | None = None
    first_reset_at: float | None = None
    errors: list[str] = field(default_factory=list)
    history: deque[tuple[Any, ...]] = field(default_factory=lambda: deque(maxlen=64))
    dropped_stale: int = 0
    dropped_newer: int = 0
    dropped_waiting: int = 0
    applied: int = 0

    @property
    def epoch(self) -> int | None:
        """The newest epoch accepted; None before the first reset."""
        return None if self.fence.phase is Phase.PENDING else self.fence.epoch

    @property
    def source(self) -> tuple[str, str] | None:
        return self.fence.source

    @property
    def awaiting(self) -> bool:
        """A reset is due: the fence waits for one, or a request is unanswered."""
        return self.fence.awaiting or self.asking

    def __post_init__(self) -> None:
        self.mode = str(self.query.get("mode", "window"))
        limit = self.query.get("limit")
        self.limit = int(limit) if limit is not None else None

    # -- what the client holds

    def ids(self) -> list[str]:
        if self.mode == "window":
            return [i.id for i in self.items]
        return sorted(self.matched)

    def rows(self) -> dict[str, Item]:
        if self.mode == "window":
            return {i.id: i for i in self.items}
        return dict(self.matched)

    # -- applying messages

    def _fail(self, text: str) -> None:
        recent = list(self.history)[-12:]
        self.errors.append(f"{self.rid} seq {self.seq}: {text}; recent: {recent}")

    def _version(self, msg: dict[str, Any]) -> None:
        row_id, version = msg.get("id"), msg.get("version")
        if not isinstance(row_id, str) or not isinstance(version, int):
            self._fail(f"{msg.get('op')} without id/version: {msg}")
            return
        last = self.versions.get(row_id)
        if last is not None and version < last:
            self._fail(f"version of {row_id} went back {last} -> {version}")
        self.versions[row_id] = max(version, last or 0)
        # A change reaches a list once: after the snapshot, an update, move or unmatch
        # (and a match) always carries a version newer than any this list has had for
        # the row since its reset (an enter or leave may repeat one: a promotion or an
        # eviction of an unchanged row).
        op = msg.get("op")
        seen = self.since_reset.get(row_id)
        live = op in ("update", "move", "unmatch") or (op == "match" and self.synced)
        if live and seen is not None and version <= seen:
            self._fail(f"{op} {row_id} v{version} again (already had v{seen}): a duplicate")
        self.since_reset[row_id] = max(version, seen or 0)

    def apply(self, msgs: list[dict[str, Any]], shard: str, epoch: int, now: float) -> None:
        for msg in msgs:
            self.seq += 1
            self.applied += 1
            op = msg.get("op")
            self.history.append((self.seq, shard, epoch % 100_000, op, msg.get("id"),
                                 msg.get("version", 0) % 100_000, msg.get("from"), msg.get("to")))
            if op == "reset":
                self.items.clear()
                self.matched.clear()
                self.since_reset.clear()
                self.synced = False
                self.truncated = False
                self.resets += 1
                self.reset_log.append((now, shard, epoch))
                if self.first_reset_at is None:
                    self.first_reset_at = now
                continue
            if op == "synced":
                held = len(self.items) if self.mode == "window" else len(self.matched)
                if msg.get("count") != held:
                    self._fail(f"synced count {msg.get('count')} but {held} held")
                self.synced = True
                self.truncated = bool(msg.get("truncated", False))
                self.synced_at = now
                continue
            self._version(msg)
            if self.mode == "window":
                self._window(op, msg)
            else:
                self._changes(op, msg)

    def _window(self, op: Any, msg: dict[str, Any]) -> None:
        items, row_id = self.items, msg.get("id")
        src, dst = msg.get("from"), msg.get("to")
        if not isinstance(src, int) or not isinstance(dst, int):
            self._fail(f"{op} without from/to: {msg}")
            return
        if op in ("leave", "move", "update") and not self._holds(src, row_id, op):
            return
        self._window_op(op, msg, str(row_id), src, dst)
        if self.limit is not None and len(items) > self.limit:
            self._fail(f"list of {len(items)} exceeds limit {self.limit}")

    def _holds(self, index: int, row_id: Any, op: Any) -> bool:
        items = self.items
        if 0 <= index < len(items) and items[index].id == row_id:
            return True
        at = items[index].id if 0 <= index < len(items) else None
        self._fail(f"{op} {row_id} from {index}: the list holds {at!r} there")
        return False

    def _window_op(self, op: Any, msg: dict[str, Any], row_id: str, src: int, dst: int) -> None:
        items = self.items
        if op == "enter":
            if src != -1 or not 0 <= dst <= len(items):
                self._fail(f"enter {row_id} from {src} to {dst} in a list of {len(items)}")
                return
            if any(i.id == row_id for i in items):
                self._fail(f"enter {row_id}: already in the list")
            items.insert(dst, item_of(msg))
        elif op == "leave":
            if dst != -1:
                self._fail(f"leave {row_id} to {dst}")
            items.pop(src)
        elif op == "move":
            items.pop(src)
            if not 0 <= dst <= len(items):
                self._fail(f"move {row_id} to {dst} in a list of {len(items)}")
                dst = len(items)
            items.insert(dst, item_of(msg))
        elif op == "update":
            if src != dst:
                self._fail(f"update {row_id} from {src} to {dst}")
            items[src] = item_of(msg)
        else:
            self._fail(f"unknown window op {op!r}")

    def _changes(self, op: Any, msg: dict[str, Any]) -> None:
        row_id = str(msg.get("id"))
        if op == "match":
            if row_id in self.matched:
                self._fail(f"match {row_id}: already matched")
            self.matched[row_id] = Item(row_id, int(msg["version"]), msg.get("row") or {})
        elif op == "update":
            if row_id not in self.matched:
                self._fail(f"update {row_id}: not matched")
            self.matched[row_id] = Item(row_id, int(msg["version"]), msg.get("row") or {})
        elif op == "unmatch":
            if self.matched.pop(row_id, None) is None:
                self._fail(f"unmatch {row_id}: not matched")
        else:
            self._fail(f"unknown changes op {op!r}")


def item_of(msg: dict[str, Any]) -> Item:
    return Item(str(msg["id"]), int(msg["version"]), msg.get("row") or {}, msg.get("cursor"))


Decoded = tuple[tuple[str, ...], list[dict[str, Any]]]
"""One group of a frame: its registry ids and its messages, decoded."""


