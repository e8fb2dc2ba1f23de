"""JWT authentication and scopes (PROTOCOL.md section 8).

Invariant: the tenant comes from a verified token only. Algorithms are pinned by
configuration, so `alg: none` and any algorithm not configured are refused before a
signature is looked at; `exp` is required unless turned off; `nbf` and `iat` in the future
are refused (within the configured leeway); the tenant claim must be a valid tenant name
and not a reserved one (`RESERVED_TENANTS`: the delivery canary's).
Every refusal is `Unauthorized` with a message that names the fault, never the token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from cluster.errors import Forbidden, InvalidRequest, Unauthorized
from cluster.settings import AuthSettings
from storage import check_tenant

__all__ = ["CANARY_TENANT", "RESERVED_TENANTS", "Authenticator", "Principal", "bearer_token",
           "issue_token"]

_FAULTS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted here"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidAudienceError, "the token's audience (aud) is not accepted here"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) is not accepted here"),
    (jwt.DecodeError, "the token is malformed"),
)


_REMEMBERED = 10_000  # verified tokens kept; the oldest is dropped when full


def _number(value: object) -> float:
    """A numeric date claim (pyjwt has checked its type when present), 0 when absent."""
    return float(value) if isinstance(value, int | float) else 0.0


def _scopes(raw: object) -> frozenset[str]:
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(s for s in raw if isinstance(s, str))
    return frozenset()


CANARY_TENANT = "lq.canary"
"""The delivery canary's tenant (`gateway.live.canary`): no token may name it."""
RESERVED_TENANTS = frozenset({CANARY_TENANT})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant of the token and its scopes."""

    tenant: str
    scopes: frozenset[str]

    def can(self, action: str, entity: str) -> bool:
        return f"lq:{action}:{entity}" in self.scopes or f"lq:{action}:*" in self.scopes

    def require(self, action: str, entity: str) -> None:
        """Raise Forbidden unless the token holds `lq:<action>:<entity>` or `lq:<action>:*`."""
        if not self.can(action, entity):
            raise Forbidden(f"the token lacks the scope lq:{action}:{entity} (or lq:{action}:*)")

    def require_admin(self) -> None:
        if "lq:admin" not in self.scopes:
            raise Forbidden("the token lacks the scope lq:admin")


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer <jwt>` header, or Unauthorized."""
    value = headers.get("authorization")
    if value is None:
        raise Unauthorized("no token: send the header Authorization: Bearer <jwt>")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be: Bearer <jwt>")
    return token.strip()


class Authenticator:
    """Verifies tokens with the configured key and algorithms."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.algorithms = list(settings.algorithms)
        self.key: Any
        if self.algorithms == ["HS256"]:
            if len(settings.jwt_secret.encode()) < 32:
                raise ValueError("jwt_secret: an HS256 secret needs at least 32 bytes")
            self.key = settings.jwt_secret.encode()
        else:
            if not settings.jwt_public_key:
                raise ValueError("jwt_public_key: RS256 / ES256 need a PEM public key")
            self.key = load_pem_public_key(settings.jwt_public_key.encode())
        required = ["exp"] if settings.jwt_require_exp else []
        self.options: Any = {"require": required, "verify_aud": bool(settings.jwt_audience)}
        self.decoder = jwt.PyJWT()
        self._verified: dict[str, tuple[Principal, float, float]] = {}

    def verify(self, token: str) -> Principal:
        """The principal of a valid token, or Unauthorized naming what is wrong with it."""
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Principal, float]:
        """The principal of a valid token and the time (epoch seconds, leeway included)
        when it stops being valid (`math.inf` without `exp`), or Unauthorized.

        A token that verified once is remembered (bounded, oldest dropped first) with the
        time span in which it is valid, so a client that sends the same token on every
        request pays for the signature check once; outside that span it is checked in
        full again, which raises the precise error.
        """
        hit = self._verified.get(token)
        if hit is not None:
            principal, valid_from, valid_until = hit
            if valid_from <= time.time() < valid_until:
                return principal, valid_until
            del self._verified[token]
        principal, valid_from, valid_until = self._verify(token)
        if len(self._verified) >= _REMEMBERED:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, valid_from, valid_until)
        return principal, valid_until

    def _verify(self, token: str) -> tuple[Principal, float, float]:
        s = self.settings
        try:
            claims = self.decoder.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                options=self.options,
                leeway=s.jwt_leeway,
                audience=s.jwt_audience or None,
                issuer=s.jwt_issuer or None,
            )
        except jwt.PyJWTError as e:
            raise Unauthorized(_describe(e)) from e
        tenant = claims.get(s.jwt_tenant_claim)
        if tenant is None:
            raise Unauthorized(f"the token has no tenant claim {s.jwt_tenant_claim!r}")
        try:
            check_tenant(tenant)
        except InvalidRequest as e:
            raise Unauthorized(f"the token's tenant claim is not valid: {e}") from e
        if tenant in RESERVED_TENANTS:
            raise Unauthorized(f"the tenant {tenant!r} is reserved for lq itself")
        principal = Principal(tenant, _scopes(claims.get("scope")))
        leeway = s.jwt_leeway
        valid_from = max(_number(claims.get("nbf")), _number(claims.get("iat"))) - leeway
        exp = claims.get("exp")
        valid_until = math.inf if exp is None else _number(exp) + leeway
        return principal, valid_from, valid_until

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return self.verify(bearer_token(headers))


def _describe(error: Exception) -> str:
    for kind, text in _FAULTS:
        if isinstance(error, kind):
            detail = str(error) if isinstance(error, jwt.MissingRequiredClaimError) else ""
            return f"{text}: {detail}" if detail else text
    return "the token is not valid"



def issue_token(
    secret: str,
    tenant: str,
    scopes: str,
    ttl: float | None = 3600,
    tenant_claim: str = "tenant",
    now: float | None = None,
) -> str:
    """An HS256 token for `tenant` with space-separated `scopes` (for `lq token` and tests)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {tenant_claim: tenant, "scope": scopes, "iat": issued}
    if ttl is not None:
        claims["exp"] = issued + int(ttl)
    return jwt.encode(claims, secret, algorithm="HS256")
