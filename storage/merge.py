"""JSON merge patch (RFC 7396), pure."""

from __future__ import annotations

from typing import Any

from cluster.errors import InvalidRow

__all__ = ["merge_patch"]


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def merge_patch(target: dict[str, Any], patch: object) -> dict[str, Any]:
    """`target` with `patch` merged in; a null removes a key. The patch must be an object."""
    if not isinstance(patch, dict):
        raise InvalidRow("a merge patch for a row is a JSON object")
    merged = _merge(target, patch)
    assert isinstance(merged, dict)
    return merged
