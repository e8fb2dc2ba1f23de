"""Transitional alias of `gateway.live.delivery` (the delivery core moved there).

`lq/bench/_simsub.py` still imports this path while another change rewrites it; once it
imports `gateway.live.delivery`, delete this module.
"""

from __future__ import annotations

from .live.delivery import Phase, SubFence

__all__ = ["Phase", "SubFence"]
