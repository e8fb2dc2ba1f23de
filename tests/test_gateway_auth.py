"""Tokens and scopes: every token fault is 401, a missing scope is 403, and a second
tenant learns nothing about the first one's rows (404 exactly as for a row never made)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, cast

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cluster.errors import Unauthorized
from cluster.settings import AuthSettings
from gateway import Authenticator
from tests.gateway_helpers import SECRET, auth, token

pytest_plugins = ["tests.gateway_fixtures"]

ROW = "/v1/entities/tasks/rows/{}"
NOW = int(time.time())


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _alg_none() -> str:
    claims = {"tenant": "acme", "scope": "lq:read:*", "exp": NOW + 3600}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())


def _pem(key: Any) -> str:
    return cast(bytes, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )).decode()


TOKEN_FAULTS: dict[str, dict[str, str] | None] = {
    "no token": None,
    "not bearer": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "bearer without token": {"Authorization": "Bearer"},
    "malformed": auth("not.a.jwt"),
    "garbage": auth("x" * 40),
    "alg none": auth(_alg_none()),
    "wrong alg HS384": auth(token(algorithm="HS384")),
    "wrong alg HS512": auth(token(algorithm="HS512")),
    "RS256 when HS256 pinned": auth(token(key=_RSA, algorithm="RS256")),
    "bad signature": auth(token(key="another-secret-" + "9876543210fedcba" * 4)),
    "tampered payload": auth(
        token().rsplit(".", 2)[0] + "." + _b64({"tenant": "evil", "exp": NOW + 3600})
        + "." + token().rsplit(".", 1)[1]
    ),
    "missing exp": auth(token(ttl=None)),
    "expired": auth(token(ttl=-30)),
    "nbf in the future": auth(token(nbf=NOW + 3600)),
    "iat in the future": auth(token(iat=NOW + 3600)),
    "missing tenant claim": auth(token(tenant=None)),
    "tenant not a string": auth(token(tenant=42)),
    "empty tenant": auth(token(tenant="")),
    "tenant with control char": auth(token(tenant="a\nb")),
}


@pytest.mark.parametrize("headers", list(TOKEN_FAULTS.values()), ids=list(TOKEN_FAULTS))
@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", ROW.format("r1"), None),
        ("PUT", ROW.format("r1"), {"a": 1}),
        ("POST", "/v1/entities/tasks/query", {"limit": 1}),
        ("POST", "/v1/batch", {"ops": [{"op": "delete", "entity": "tasks", "id": "r1"}]}),
    ],
    ids=["get", "put", "query", "batch"],
)
def test_token_faults_are_401(
    shttp: httpx.Client, headers: dict[str, str] | None, method: str, path: str, body: Any
) -> None:
    shttp.put(ROW.format("r1"), json={"n": 1}, headers=auth(token()))
    r = shttp.request(method, path, json=body, headers=headers or {})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert shttp.get(ROW.format("r1"), headers=auth(token())).json()["row"] == {"n": 1}


SCOPE_FAULTS = [
    ("PUT", "lq:read:*", 403),
    ("PATCH", "lq:read:tasks", 403),
    ("DELETE", "lq:read:* lq:write:notes", 403),
    ("GET", "lq:write:*", 403),
    ("QUERY", "lq:write:tasks", 403),
    ("GET", "lq:read:notes", 403),
    ("GET", "lq:admin", 403),
    ("PUT", "", 403),
    ("GET", "lq:read:tasks", 200),
    ("QUERY", "lq:read:*", 200),
    ("PUT", "lq:write:tasks", 200),
    ("PATCH", ["lq:write:tasks"], 200),
    ("DELETE", "lq:write:* lq:read:notes", 200),
]


@pytest.mark.parametrize("method,scope,status", SCOPE_FAULTS)
def test_scopes(shttp: httpx.Client, method: str, scope: str | list[str], status: int) -> None:
    shttp.put(ROW.format("r1"), json={"n": 1}, headers=auth(token()))
    h = auth(token("acme", scope))
    if method == "QUERY":
        r = shttp.post("/v1/entities/tasks/query", json={"limit": 5}, headers=h)
    else:
        r = shttp.request(
            method, ROW.format("r1"), json={"n": 2} if method in ("PUT", "PATCH") else None,
            headers=h,
        )
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["error"]["code"] == "forbidden"
        assert shttp.get(ROW.format("r1"), headers=auth(token())).json()["row"] == {"n": 1}


def _same_answer(a: httpx.Response, b: httpx.Response, id_a: str, id_b: str) -> None:
    assert a.status_code == b.status_code
    assert a.text.replace(id_a, "<id>") == b.text.replace(id_b, "<id>")
    assert a.headers.get("etag") == b.headers.get("etag")


def test_second_tenant_learns_nothing(shttp: httpx.Client) -> None:
    owner = auth(token("acme"))
    other = auth(token("evil"))
    v = shttp.put(ROW.format("secret"), json={"pin": 1234}, headers=owner).json()["version"]
    cases: list[tuple[str, dict[str, Any]]] = [
        ("GET", {}),
        ("PATCH", {"json": {"pin": 0}}),
        ("DELETE", {}),
        ("PATCH", {"json": {"pin": 0}, "headers": {"If-Match": f'"{v}"'}}),
        ("DELETE", {"headers": {"If-Match": f'"{v}"'}}),
        ("PUT", {"json": {"pin": 0}, "headers": {"If-Match": f'"{v}"'}}),
        ("GET", {"headers": {"If-None-Match": f'"{v}"'}}),
    ]
    for method, extra in cases:
        headers = {**other, **extra.get("headers", {})}
        body = extra.get("json")
        guessed = shttp.request(method, ROW.format("secret"), json=body, headers=headers)
        never = shttp.request(method, ROW.format("never-made"), json=body, headers=headers)
        assert guessed.status_code in (404, 412), (method, guessed.text)
        _same_answer(guessed, never, "secret", "never-made")
    page = shttp.post("/v1/entities/tasks/query", json={"limit": 100}, headers=other).json()
    assert page == {"rows": [], "next": None}
    ops = [{"op": o, "entity": "tasks", "id": "secret", "row": {"pin": 0}} for o in ("patch",)]
    ops.append({"op": "delete", "entity": "tasks", "id": "secret"})
    results = shttp.post("/v1/batch", json={"ops": ops}, headers=other).json()["results"]
    assert [x["status"] for x in results] == [404, 404]
    # a write of the other tenant makes its own row, never touches the first one's
    assert shttp.put(ROW.format("secret"), json={"pin": 0}, headers=other).status_code == 200
    mine = shttp.get(ROW.format("secret"), headers=owner).json()
    assert mine == {"id": "secret", "version": v, "row": {"pin": 1234}}
    theirs = shttp.post("/v1/entities/tasks/query", json={"limit": 5}, headers=other).json()
    assert [x["row"] for x in theirs["rows"]] == [{"pin": 0}]


def test_tenant_comes_from_the_token_not_the_request(shttp: httpx.Client) -> None:
    other = auth(token("evil"))
    shttp.put(ROW.format("x"), json={"n": 1}, headers=auth(token("acme")))
    for attempt in (
        shttp.get(ROW.format("x"), headers={**other, "X-Tenant": "acme"}),
        shttp.get(ROW.format("x"), headers=other, params={"tenant": "acme"}),
    ):
        assert attempt.status_code in (400, 404)
        assert "acme" not in attempt.text


# --- the authenticator on its own: public keys, leeway, options, refused settings


def test_rs256_and_es256_public_keys() -> None:
    for key, alg in ((_RSA, "RS256"), (_EC, "ES256")):
        a = Authenticator(AuthSettings(jwt_algorithms=alg, jwt_public_key=_pem(key)))
        assert a.verify(token("acme", key=key, algorithm=alg)).tenant == "acme"
        with pytest.raises(Unauthorized, match="algorithm"):
            a.verify(token("acme"))  # HS256 is not pinned here
        # the classic confusion: an HS256 token signed with the public key as its secret
        claims = {"tenant": "evil", "exp": NOW + 3600}
        head = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(claims)
        mac = hmac.new(_pem(key).encode(), head.encode(), hashlib.sha256).digest()
        forged = head + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        with pytest.raises(Unauthorized):
            a.verify(forged)
    both = Authenticator(
        AuthSettings(jwt_algorithms="RS256,ES256", jwt_public_key=_pem(_RSA))
    )
    assert both.verify(token("acme", key=_RSA, algorithm="RS256")).tenant == "acme"


def test_leeway_and_options() -> None:
    strict = Authenticator(AuthSettings(jwt_secret=SECRET))
    lenient = Authenticator(AuthSettings(jwt_secret=SECRET, jwt_leeway=60))
    late = token(ttl=-30)
    early = token(nbf=int(time.time()) + 30)  # now, not at import: the suite takes minutes
    for tok in (late, early):
        with pytest.raises(Unauthorized):
            strict.verify(tok)
        assert lenient.verify(tok).tenant == "acme"
    with pytest.raises(Unauthorized):
        lenient.verify(token(ttl=-90))
    no_exp = Authenticator(AuthSettings(jwt_secret=SECRET, jwt_require_exp=False))
    assert no_exp.verify(token(ttl=None)).tenant == "acme"
    with pytest.raises(Unauthorized, match="exp"):
        strict.verify(token(ttl=None))
    custom = Authenticator(AuthSettings(jwt_secret=SECRET, jwt_tenant_claim="org"))
    assert custom.verify(token(tenant=None, org="initech")).tenant == "initech"
    with pytest.raises(Unauthorized, match="org"):
        custom.verify(token("acme"))
    aud = Authenticator(AuthSettings(jwt_secret=SECRET, jwt_audience="lq", jwt_issuer="me"))
    assert aud.verify(token(aud="lq", iss="me")).tenant == "acme"
    for bad in (token(aud="other", iss="me"), token(iss="me"), token(aud="lq", iss="you")):
        with pytest.raises(Unauthorized):
            aud.verify(bad)
    mixed: Any = ["lq:read:a", 5, "lq:write:*"]  # a non-string scope entry is ignored
    principal = strict.verify(token(scope=mixed))
    assert principal.can("read", "a") and principal.can("write", "z")
    assert not principal.can("read", "b")


@pytest.mark.parametrize(
    "settings",
    [
        {"jwt_algorithms": "none"},
        {"jwt_algorithms": "HS384"},
        {"jwt_algorithms": "HS256,RS256"},
        {"jwt_algorithms": ""},
        {"jwt_leeway": 61},
        {"jwt_leeway": -1},
        {"jwt_tenant_claim": ""},
    ],
)
def test_refused_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AuthSettings(jwt_secret=SECRET, **settings)


def test_refused_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Authenticator(AuthSettings(jwt_secret="short"))
    with pytest.raises(ValueError, match="public key"):
        Authenticator(AuthSettings(jwt_algorithms="RS256"))
