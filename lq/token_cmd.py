"""`lq token`: print an HS256 development token for a tenant and scopes.

The secret is `--secret`, else `$LQ_JWT_SECRET`, else the one `lq dev` keeps in its state
directory (`--state-dir`, else `$LQ_DEV_STATE`, else the default; see `lq._devstate`),
so next to a running `lq dev` no flag is needed. The secret itself is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from gateway.auth import issue_token
from lq._devstate import find_running, state_dir, stored_secret

__all__ = ["MIN_SECRET_BYTES", "configure", "run", "secret_problem"]

MIN_SECRET_BYTES = 32  # the gateway refuses shorter HS256 secrets


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", default="dev",
                        help="the tenant claim (default dev, the tenant of lq dev's token)")
    parser.add_argument(
        "--scope", default="lq:read:* lq:write:*", help="space-separated scopes (default: all data)"
    )
    parser.add_argument("--ttl", type=float, default=3600, help="seconds until exp (default 3600)")
    parser.add_argument("--secret", help="HS256 secret (default: $LQ_JWT_SECRET, else the one "
                                         "lq dev keeps in its state directory)")
    parser.add_argument("--state-dir", help="lq dev's state directory (default: $LQ_DEV_STATE, "
                                            "else $XDG_STATE_HOME/lq/dev or ~/.local/state/lq/dev)")
    parser.add_argument(
        "--tenant-claim", help="name of the claim that holds the tenant "
                               "(default: $LQ_JWT_TENANT_CLAIM or tenant)"
    )


def secret_problem(secret: str, source: str) -> str | None:
    """Why `secret` (named by `source`) cannot sign HS256 tokens, or None."""
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return (f"{source} is {size} bytes long; an HS256 secret needs at least "
                f"{MIN_SECRET_BYTES} bytes")
    return None


def _secret(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str | None]:
    """The secret to sign with, or a problem: flag > environment > lq dev's state."""
    if args.secret is not None:
        return args.secret, secret_problem(args.secret, "--secret")
    if env.get("LQ_JWT_SECRET"):
        return env["LQ_JWT_SECRET"], secret_problem(env["LQ_JWT_SECRET"], "LQ_JWT_SECRET")
    path = state_dir(args.state_dir, env)
    running = find_running(path)
    if running is not None and running.secret_from != "state":
        return "", (f"the running lq dev (pid {running.pid}) signs with LQ_JWT_SECRET from "
                    "its own environment: give that secret as --secret or LQ_JWT_SECRET")
    kept = stored_secret(path)
    if kept is None:
        return "", ("no secret: give --secret or LQ_JWT_SECRET, or run lq dev once "
                    f"(it keeps one in {path})")
    return kept, secret_problem(kept, f"the secret in {path}")


def run(args: argparse.Namespace) -> int:
    secret, problem = _secret(args, os.environ)
    if problem is None and args.ttl <= 0:
        problem = "--ttl must be positive"
    if problem is not None:
        print(f"lq token: {problem}", file=sys.stderr)
        return 2
    claim = args.tenant_claim or os.environ.get("LQ_JWT_TENANT_CLAIM") or "tenant"
    print(issue_token(secret, args.tenant, args.scope, args.ttl, claim))
    return 0
