"""One simulated subscription: applies PROTOCOL.md section 3 messages with the client's
own applier (`lq_client.view.ViewState`, with its memory of every version seen) and
records every violation instead of raising (see `lq.bench._simgateway` for the rules of
the gateway around it). A violating message leaves the list as it was; the list starts
over at the next reset."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lq_client.view import ProtocolViolation, ViewState

from gateway.live.delivery import Phase, SubFence

__all__ = ["Decoded", "Item", "SimSub"]


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
    limit: int | None = None  # the view takes it at each batch (a reanchor's, at its reset)
    active: bool = True
    # wire state: the fence is the shipped gateway's (`gateway.live.delivery`)
    fence: SubFence = field(default_factory=SubFence)
    asking: bool = True  # a subscribe, reanchor or resync is out and unanswered
    refresh: bool = False  # the next ask is a `resync` even before any reset
    next_limit: int | None = None  # a reanchor's limit, taken with its reset
    asked_at: float = 0.0
    asks: int = 0
    resyncs: int = 0
    # client state: the list is `view`'s; `seq` numbers what was applied, for `history`
    view: ViewState = field(init=False)
    seq: int = 0
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
        self.view = ViewState(self.mode == "window", self.limit, numbered=False,
                              remember=True)

    # -- what the client holds

    @property
    def synced(self) -> bool:
        return self.view.synced

    @property
    def truncated(self) -> bool:
        return self.view.truncated

    @property
    def items(self) -> list[Item]:
        """The window, in order (window mode)."""
        return [Item(r.id, r.version, r.values, r.cursor) for r in self.view.rows]

    def ids(self) -> list[str]:
        if self.mode == "window":
            return [r.id for r in self.view.rows]
        return sorted(self.view.by_id)

    def rows(self) -> dict[str, Item]:
        return {r.id: Item(r.id, r.version, r.values, r.cursor) for r in self.view.current()}

    # -- applying messages

    def apply(self, msgs: list[dict[str, Any]], shard: str, epoch: int, now: float) -> None:
        self.view.limit = self.limit
        for msg in msgs:
            self.seq += 1
            self.applied += 1
            op = msg.get("op")
            self.history.append((self.seq, shard, epoch % 100_000, op, msg.get("id"),
                                 msg.get("version", 0) % 100_000, msg.get("from"), msg.get("to")))
            try:
                self.view.apply(msg)
            except ProtocolViolation as e:
                recent = list(self.history)[-12:]
                self.errors.append(f"{self.rid} seq {self.seq}: {e}; recent: {recent}")
            if op == "reset":
                self.resets += 1
                self.reset_log.append((now, shard, epoch))
                if self.first_reset_at is None:
                    self.first_reset_at = now
            elif op == "synced":
                self.synced_at = now


Decoded = tuple[tuple[str, ...], list[dict[str, Any]]]
"""One group of a frame: its registry ids and its messages, decoded."""
