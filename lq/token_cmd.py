"""`lq token`: print an HS256 development token for a tenant and scopes."""

from __future__ import annotations

import argparse
import os
import sys

from gateway.auth import issue_token

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant claim")
    parser.add_argument(
        "--scope", default="lq:read:* lq:write:*", help="space-separated scopes (default: all data)"
    )
    parser.add_argument("--ttl", type=float, default=3600, help="seconds until exp (default 3600)")
    parser.add_argument("--secret", help="HS256 secret (default: $LQ_JWT_SECRET)")
    parser.add_argument(
        "--tenant-claim", help="name of the tenant claim (default: $LQ_JWT_TENANT_CLAIM or tenant)"
    )


def run(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("LQ_JWT_SECRET", "")
    if len(secret.encode()) < 32:
        print("lq token: give --secret or LQ_JWT_SECRET (at least 32 bytes)", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("lq token: --ttl must be positive", file=sys.stderr)
        return 2
    claim = args.tenant_claim or os.environ.get("LQ_JWT_TENANT_CLAIM") or "tenant"
    print(issue_token(secret, args.tenant, args.scope, args.ttl, claim))
    return 0
