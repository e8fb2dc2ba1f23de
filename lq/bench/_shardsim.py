"""Shard processes and a simulated gateway (one import for the bench and the tests)."""

from lq.bench._fleet import (
    Fleet,
    ShardProcess,
    cancel_all,
    http_get,
    redis_and_logs,
    shard_env,
)
from lq.bench._simgateway import FrameRecord, SimGateway, taken_over
from lq.bench._simsub import Decoded, SimSub

__all__ = [
    "Decoded",
    "Fleet",
    "FrameRecord",
    "ShardProcess",
    "SimGateway",
    "SimSub",
    "cancel_all",
    "http_get",
    "redis_and_logs",
    "shard_env",
    "taken_over",
]
