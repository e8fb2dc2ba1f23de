"""Property-based fuzzing of the whole HTTP API from its own OpenAPI description.

schemathesis generates requests for every operation of `gateway.spec()` (valid ones and
ones that break the schema) and checks every answer: never a 5xx, the status is one the
description lists, and the body and content type match what it says for that status.
Bounded: a fixed number of examples per operation, no deadline per example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway import spec
from tests.gateway_helpers import ThreadServer, auth, token

pytest_plugins = ["tests.gateway_fixtures"]

# The live endpoints stream or wait (SSE, long polling); tests/test_live_*.py cover them.
schema = schemathesis.openapi.from_dict(spec()).exclude(path=["/v1/sse", "/v1/poll"])
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
H = auth(token("acme", ttl=3600))


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_answers_as_described(
    case: schemathesis.Case[Any], sgateway: ThreadServer, session: requests.Session
) -> None:
    headers = dict(case.headers or {})
    headers.setdefault("Authorization", H["Authorization"])
    response = case.call(base_url=sgateway.url, session=session, headers=headers, timeout=10)
    case.validate_response(response, checks=CHECKS)
