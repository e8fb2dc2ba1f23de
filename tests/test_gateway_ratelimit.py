"""The per-tenant HTTP rate limit: 429 `rate_limited` past the burst, per tenant."""

from __future__ import annotations

import httpx

from tests.gateway_helpers import auth, config_for, running, token


def test_http_rate_limit_per_tenant(standalone_url: str) -> None:
    config = config_for(standalone_url, http_rate=0.5, http_burst=3)
    with running(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as http:
        acme, other = auth(token("acme")), auth(token("other"))
        path = "/v1/entities/tasks/rows/r1"
        statuses = [http.put(path, json={"n": i}, headers=acme).status_code for i in range(5)]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429]
        refused = http.get(path, headers=acme)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        # Another tenant has its own bucket; the refused writes changed nothing.
        assert http.get(path, headers=other).status_code == 404
        assert http.put(path, json={"n": 9}, headers=other).status_code == 200


def test_http_rate_limit_off_by_default(standalone_url: str) -> None:
    with running(config_for(standalone_url)) as gw, httpx.Client(base_url=gw.url) as http:
        headers = auth(token("acme"))
        codes = {http.get("/v1/entities/tasks/rows/x", headers=headers).status_code
                 for _ in range(300)}
        assert codes == {404}
