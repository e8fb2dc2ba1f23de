"""compose/: the YAML and the load balancer's config, checked statically (no Docker here):
services, images, commands, health checks, and every `LQ_` variable a real setting
whose value the settings accept."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.settings import (
    AuthSettings,
    GatewaySettings,
    QueryLimits,
    ShardSettings,
    StorageSettings,
    env_name,
    from_env,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
SETTINGS = (StorageSettings, AuthSettings, GatewaySettings, ShardSettings, QueryLimits)
KNOWN = {env_name(cls, f.name) for cls in SETTINGS for f in dataclasses.fields(cls)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return loaded


def services(compose: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose["services"].items() if k.startswith(prefix)}


def interpolated(env: dict[str, Any]) -> dict[str, str]:
    """Compose's `${VAR:?message}` / `${VAR:-default}` as a user with a secret set sees it."""
    out = {}
    for key, value in env.items():
        text = str(value)
        text = re.sub(r"\$\{LQ_JWT_SECRET:\?[^}]*\}", "s" * 40, text)
        text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
        out[key] = text
    return out


def test_the_services_are_redis_two_shards_two_gateways_and_a_balancer(
    compose: dict[str, Any],
) -> None:
    assert set(compose["services"]) == {"redis", "shard-0", "shard-1", "gateway-0", "gateway-1",
                                        "lb"}
    assert "redis-data" in compose["volumes"]


def test_redis_keeps_an_append_only_file_and_is_health_checked(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:")
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in ("everysec", "always")
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_shards_and_gateways_run_the_lq_image_with_the_right_command(
    compose: dict[str, Any],
) -> None:
    lq = services(compose, "shard-") | services(compose, "gateway-")
    images = {s["image"] for s in lq.values()}
    assert len(images) == 1 and images.pop().endswith("lq:dev}")
    for name, service in lq.items():
        assert service["build"]["context"] == ".."
        assert (COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["command"] == [name.split("-")[0]]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["restart"] == "unless-stopped"
        grace = int(service["stop_grace_period"].rstrip("s"))
        assert grace >= 10  # the SIGTERM drain must fit


def test_each_shard_has_a_distinct_stable_id_and_a_readiness_check(
    compose: dict[str, Any],
) -> None:
    shards = services(compose, "shard-")
    ids = [s["environment"]["LQ_SHARD_ID"] for s in shards.values()]
    assert ids == sorted(shards) and len(set(ids)) == 2
    for shard in shards.values():
        env = interpolated(shard["environment"])
        settings = from_env(ShardSettings, env)
        assert settings.http_host == "0.0.0.0"
        check = " ".join(shard["healthcheck"]["test"])
        assert f"http://127.0.0.1:{settings.http_port}/readyz" in check
        assert from_env(StorageSettings, env).redis_url == "redis://redis:6379/0"


def test_each_gateway_listens_everywhere_and_is_checked_on_readyz(compose: dict[str, Any]) -> None:
    for gateway in services(compose, "gateway-").values():
        env = interpolated(gateway["environment"])
        settings = from_env(GatewaySettings, env)
        assert settings.host == "0.0.0.0"
        assert len(from_env(AuthSettings, env).jwt_secret) >= 32
        check = " ".join(gateway["healthcheck"]["test"])
        assert f"http://127.0.0.1:{settings.port}/readyz" in check


def test_the_jwt_secret_must_be_given(compose: dict[str, Any]) -> None:
    for service in services(compose, "gateway-").values():
        assert re.fullmatch(r"\$\{LQ_JWT_SECRET:\?.+\}", service["environment"]["LQ_JWT_SECRET"])


def test_every_lq_variable_is_a_real_setting() -> None:
    text = (COMPOSE / "docker-compose.yml").read_text()
    used = set(re.findall(r"\bLQ_[A-Z0-9_]+", text))
    assert used and used <= KNOWN, used - KNOWN
    for service in yaml.safe_load(text)["services"].values():
        for key in service.get("environment", {}):
            assert not key.startswith("lq_")


def test_the_balancer_spreads_requests_and_pins_long_polling(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert lb["image"].startswith("haproxy:")
    source, target = lb["volumes"][0].split(":")[:2]
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"
    config = (COMPOSE / source).read_text()
    assert lb["ports"] == ["${LB_PORT:-8080}:8080"]
    assert {g: "service_healthy" for g in services(compose, "gateway-")} == {
        k: v["condition"] for k, v in lb["depends_on"].items()}
    assert "monitor-uri /lb-healthz" in config and "/lb-healthz" in lb["healthcheck"]["test"][-1]
    sections = haproxy_sections(config)
    frontend = sections["frontend http"]
    assert "bind :8080" in frontend
    assert "acl is_poll path_beg /v1/poll" in frontend
    assert "use_backend gateways_poll if is_poll" in frontend
    assert "default_backend gateways" in frontend
    gateways = sorted(services(compose, "gateway-"))
    for backend in ("backend gateways", "backend gateways_poll"):
        lines = sections[backend]
        servers = [line.split()[1:3] for line in lines if line.startswith("server ")]
        assert servers == [[g, f"{g}:8080"] for g in gateways]
        assert "option httpchk GET /readyz" in lines
    poll = sections["backend gateways_poll"]
    assert any(line.startswith("cookie ") and "insert" in line for line in poll)
    assert "balance source" in poll  # clients without cookies stick by address
    assert "timeout tunnel 1h" in sections["defaults"]  # WebSockets outlive request timeouts


def haproxy_sections(config: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in config.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not raw.startswith((" ", "\t")):
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_the_readme_explains_start_token_and_affinity() -> None:
    readme = (COMPOSE / "README.md").read_text()
    for needed in ("docker compose up", "LQ_JWT_SECRET", "lq token", "/v1/poll", "appendfsync"):
        assert needed in readme
