"""The shard: the in-process matcher (collections, shared views, exact windows).

`Matcher` is the entry point: `load` rows, `subscribe`/`reanchor`/`unsubscribe`
queries, `apply` changes; it returns `Frame`s (encoded once) and `ViewDelta`s (a frame
plus the subscriber ids it goes to, grouped by route). The runtime around it (ownership,
claims, loops, publishing) is `shard.runtime`.
"""

from ._collection import Collection
from ._dispatch import Dispatch, Plan, plan_for
from ._intervals import IntervalSet
from ._matcher import Matcher
from ._oneshot import first_rows
from ._types import Change, Frame, MatcherSettings, Message, Routes, Row, ViewDelta
from ._view import View

__all__ = [
    "Change",
    "Collection",
    "Dispatch",
    "Frame",
    "IntervalSet",
    "Matcher",
    "MatcherSettings",
    "Message",
    "Plan",
    "Routes",
    "Row",
    "View",
    "ViewDelta",
    "first_rows",
    "plan_for",
]
