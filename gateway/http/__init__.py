"""The HTTP data API: rows, batches, one-shot queries, the cluster view, health,
metrics and the OpenAPI document.

Request/response only: nothing here holds a subscription or a task. Every Redis call
goes through `Context.call` (breaker, 503s); errors are answered by `gateway.errors`.
"""

from __future__ import annotations

__all__: list[str] = []
