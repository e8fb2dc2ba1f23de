"""Everything that talks to Redis; the only package that imports `redis`."""

from ._format import StoredRow, check_id, check_tenant
from .batch import BatchResult, WriteOp, run_batch
from .connection import RedisClient, connect, is_cluster, redact
from .log import ChangeLog, Loaded, LogRead, LogTrimmed
from .merge import merge_patch
from .oneshot import QueryPage, QueryRow, run_query
from .registry import Registry
from .rows import RowStore, WriteResult
from .secrets import cursor_secret

__all__ = [
    "BatchResult",
    "ChangeLog",
    "Loaded",
    "LogRead",
    "LogTrimmed",
    "QueryPage",
    "QueryRow",
    "RedisClient",
    "Registry",
    "RowStore",
    "StoredRow",
    "WriteOp",
    "WriteResult",
    "check_id",
    "check_tenant",
    "connect",
    "cursor_secret",
    "is_cluster",
    "merge_patch",
    "redact",
    "run_batch",
    "run_query",
]
