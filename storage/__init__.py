"""Everything that talks to Redis; the only package that imports `redis`.

A process opens one `Storage` front from its `StorageSettings` and takes every adapter
and client from it (see `storage/front.py`); the adapters stay importable for tests
that check one of them alone, with an explicit prefix.
"""

from ._format import StoredRow, check_id, check_tenant
from .batch import BatchResult, WriteOp, run_batch
from .connection import RedisClient, connect, is_cluster, redact, server_run_id
from .control import OPS, Control, ControlMessage
from .deltas import Answer, DeltaFrame, DeltaRead, Deltas, DeltaStreamGone, DeltaTrimmed
from .expiry import due_rows
from .faults import as_unavailable
from .front import BLOCKING_CONNECTIONS, MAX_BLOCKING_READERS, BlockingReads, Storage
from .leases import Lease, Leases, lease_deadline, lease_value
from .log import ChangeLog, Loaded, LogRead, LogTrimmed
from .membership import MemberKind, Membership, Notice
from .membership_read import live_shard_count
from .merge import merge_patch
from .oneshot import QueryPage, QueryRow, run_query
from .registry import Registry
from .rows import RowStore, WriteResult
from .secrets import cursor_secret
from .status import ClusterSnapshot, Member, read_snapshot
from .tail import PartitionTail, TailRead, Wanted
from .tickets import Tickets

__all__ = [
    "BLOCKING_CONNECTIONS",
    "MAX_BLOCKING_READERS",
    "OPS",
    "Answer",
    "BatchResult",
    "BlockingReads",
    "ChangeLog",
    "ClusterSnapshot",
    "Control",
    "ControlMessage",
    "DeltaFrame",
    "DeltaRead",
    "DeltaStreamGone",
    "DeltaTrimmed",
    "Deltas",
    "Lease",
    "Leases",
    "Loaded",
    "LogRead",
    "LogTrimmed",
    "Member",
    "MemberKind",
    "Membership",
    "Notice",
    "PartitionTail",
    "QueryPage",
    "QueryRow",
    "RedisClient",
    "Registry",
    "RowStore",
    "Storage",
    "StoredRow",
    "TailRead",
    "Tickets",
    "Wanted",
    "WriteOp",
    "WriteResult",
    "as_unavailable",
    "check_id",
    "check_tenant",
    "connect",
    "cursor_secret",
    "due_rows",
    "is_cluster",
    "lease_deadline",
    "lease_value",
    "live_shard_count",
    "merge_patch",
    "read_snapshot",
    "redact",
    "run_batch",
    "run_query",
    "server_run_id",
]
