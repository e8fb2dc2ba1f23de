"""The Helm chart, with the real Helm library (helm-python-sdk, offline): strict lint,
renders for several value sets, the wiring between the rendered objects, every manifest
validated against the Kubernetes schemas (kubernetes-validate, strict), and values the
schema must refuse."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "lq"
KUBE_VERSIONS = ("1.25.0", "1.33.0")  # the chart's minimum, and a recent release
EXTERNAL = "redis+cluster://redis.example.internal:6379"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis": {"redis": {"url": EXTERNAL, "bundled": {"enabled": False}}},
    "redis-url-from-secret": {
        "redis": {"existingSecret": "lq-redis", "bundled": {"enabled": False}},
    },
    "five-shards": {
        "shard": {"replicas": 5, "preStopSeconds": 2, "env": {"LQ_TAIL_COUNT": "1000"}},
    },
    "ingress-hpa": {
        "ingress": {"enabled": True, "className": "nginx", "host": "lq.example.com",
                    "tlsSecretName": "lq-tls"},
        "gateway": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
                    "antiAffinity": "hard", "env": {"LQ_MAX_CONNECTIONS": "50000"}},
        "auth": {"existingSecret": "my-jwt", "secretKey": "hs256"},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "redis": {"bundled": {"persistence": {"enabled": False}}},
    },
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm_python.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    files = chart.render(values, name="demo", namespace="lq", is_install=True)
    docs: list[dict[str, Any]] = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_chart_lints_strictly(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace="lq")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_manifest_is_valid_kubernetes(
    chart: helm_python.Chart, values: dict[str, Any]
) -> None:
    docs = render(chart, values)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            check_service_monitor(doc)  # a CRD: no schema in kubernetes-validate
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def check_service_monitor(doc: dict[str, Any]) -> None:
    assert doc["kind"] == "ServiceMonitor" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec = doc["spec"]
    assert spec["selector"]["matchLabels"]["lq-metrics"] == "true"
    assert [e["path"] for e in spec["endpoints"]] == ["/metrics"]
    assert spec["endpoints"][0]["port"] in ("http", "health")


def test_defaults_wire_shards_gateways_secret_and_bundled_redis(chart: helm_python.Chart) -> None:
    docs = render(chart, {})
    shards = one(docs, "StatefulSet", "demo-lq-shard")
    assert shards["spec"]["replicas"] == 2
    headless = one(docs, "Service", shards["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    pod = shards["spec"]["template"]["spec"]
    (shard,) = pod["containers"]
    assert shard["args"] == ["shard"]
    env = env_of(shard)
    assert env["LQ_SHARD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LQ_HTTP_HOST"]["value"] == "0.0.0.0"
    assert shard["ports"] == [{"name": "health", "containerPort": 9100, "protocol": "TCP"}]
    assert env["LQ_HTTP_PORT"]["value"] == "9100"
    assert env["LQ_REDIS_URL"]["value"] == "redis://demo-lq-redis:6379/0"
    assert "LQ_JWT_SECRET" not in env  # shards check no tokens
    check_probes(shard, "health")
    assert "lifecycle" not in shard  # preStopSeconds 0: the shard drains on SIGTERM itself
    assert pod["terminationGracePeriodSeconds"] >= 10
    assert pod["securityContext"]["runAsNonRoot"] is True

    gateways = one(docs, "Deployment", "demo-lq-gateway")
    assert gateways["spec"]["replicas"] == 2
    gpod = gateways["spec"]["template"]["spec"]
    (gateway,) = gpod["containers"]
    assert gateway["args"] == ["gateway"]
    genv = env_of(gateway)
    assert genv["LQ_HOST"]["value"] == "0.0.0.0" and genv["LQ_PORT"]["value"] == "8080"
    assert gateway["ports"][0]["containerPort"] == 8080 and gateway["ports"][0]["name"] == "http"
    check_probes(gateway, "http")
    assert gateway["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert gpod["terminationGracePeriodSeconds"] > 5 + 5  # preStop + drain
    ref = genv["LQ_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    secret = one(docs, "Secret", ref["name"])
    assert len(base64.b64decode(secret["data"][ref["key"]])) >= 32
    assert genv["LQ_REDIS_URL"] == env["LQ_REDIS_URL"]

    for workload, component in ((gateways, "gateway"), (shards, "shard")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == component
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pdb = one(docs, "PodDisruptionBudget", f"demo-lq-{component}")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        anti = workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        assert "preferredDuringSchedulingIgnoredDuringExecution" in anti
    service = one(docs, "Service", "demo-lq-gateway")
    assert service["spec"]["selector"].items() <= gpod_labels(gateways).items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    redis = one(docs, "StatefulSet", "demo-lq-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    one(docs, "Service", "demo-lq-redis")
    assert not [d for d in docs if d["kind"] in ("Ingress", "HorizontalPodAutoscaler")]


def gpod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def check_probes(container: dict[str, Any], port: str) -> None:
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_shard_replicas_scale_the_statefulset(chart: helm_python.Chart) -> None:
    docs = render(chart, VALUE_SETS["five-shards"])
    shards = one(docs, "StatefulSet", "demo-lq-shard")
    assert shards["spec"]["replicas"] == 5
    (shard,) = shards["spec"]["template"]["spec"]["containers"]
    assert env_of(shard)["LQ_TAIL_COUNT"]["value"] == "1000"
    assert shard["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "2"]


def test_external_redis_replaces_the_bundled_one(chart: helm_python.Chart) -> None:
    docs = render(chart, VALUE_SETS["external-redis"])
    assert not [d for d in docs if "redis" in d["metadata"]["name"]]
    for kind, name in (("StatefulSet", "demo-lq-shard"), ("Deployment", "demo-lq-gateway")):
        (container,) = one(docs, kind, name)["spec"]["template"]["spec"]["containers"]
        assert env_of(container)["LQ_REDIS_URL"]["value"] == EXTERNAL
    docs = render(chart, VALUE_SETS["redis-url-from-secret"])
    shards = one(docs, "StatefulSet", "demo-lq-shard")
    (container,) = shards["spec"]["template"]["spec"]["containers"]
    ref = env_of(container)["LQ_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "lq-redis", "key": "redis-url"}


def test_ingress_gives_poll_its_own_sticky_route_and_hpa_owns_replicas(
    chart: helm_python.Chart,
) -> None:
    docs = render(chart, VALUE_SETS["ingress-hpa"])
    gateways = one(docs, "Deployment", "demo-lq-gateway")
    assert "replicas" not in gateways["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "demo-lq-gateway"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    main, poll = one(docs, "Ingress", "demo-lq"), one(docs, "Ingress", "demo-lq-poll")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for ingress, path in ((main, "/"), (poll, "/v1/poll")):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"] == [{"hosts": ["lq.example.com"], "secretName": "lq-tls"}]
        (rule,) = ingress["spec"]["rules"]
        (route,) = rule["http"]["paths"]
        assert route["path"] == path
        backend = route["backend"]["service"]
        target = services[backend["name"]]
        assert backend["port"]["number"] == target["spec"]["ports"][0]["port"]
        assert target["spec"]["selector"].items() <= gpod_labels(gateways).items()
    assert poll["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert "nginx.ingress.kubernetes.io/affinity" not in main["metadata"]["annotations"]
    assert poll["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] != \
        main["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    (gateway,) = gateways["spec"]["template"]["spec"]["containers"]
    ref = env_of(gateway)["LQ_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "my-jwt", "key": "hs256"}
    assert not [d for d in docs if d["kind"] == "Secret"]  # the existing one is used
    anti = gateways["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in anti
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 2
    metric_services = [s for s in services.values() if s["metadata"]["labels"].get("lq-metrics")]
    assert sorted(s["metadata"]["name"] for s in metric_services) == ["demo-lq-gateway",
                                                                       "demo-lq-shard"]
    redis = one(docs, "StatefulSet", "demo-lq-redis")
    assert "volumeClaimTemplates" not in redis["spec"]


def test_public_key_algorithms_read_the_key_from_its_secret(chart: helm_python.Chart) -> None:
    values = {"auth": {"algorithms": "RS256,ES256",
                       "publicKeySecret": {"name": "jwt-pub", "key": "pem"}}}
    docs = render(chart, values)
    gateway = one(docs, "Deployment", "demo-lq-gateway")["spec"]["template"]["spec"]
    env = env_of(gateway["containers"][0])
    assert env["LQ_JWT_ALGORITHMS"]["value"] == "RS256,ES256"
    assert env["LQ_JWT_PUBLIC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "jwt-pub",
                                                                     "key": "pem"}
    assert "LQ_JWT_SECRET" not in env  # HS256 cannot be mixed with public-key algorithms


def test_a_given_jwt_secret_is_stored_in_the_generated_secret(chart: helm_python.Chart) -> None:
    given = "s" * 40
    docs = render(chart, {"auth": {"jwtSecret": given}})
    secret = one(docs, "Secret", "demo-lq-auth")
    assert base64.b64decode(secret["data"]["jwt-secret"]).decode() == given


BAD_VALUES: dict[str, dict[str, Any]] = {
    "zero-shards": {"shard": {"replicas": 0}},
    "shards-as-text": {"shard": {"replicas": "three"}},
    "too-many-shards": {"shard": {"replicas": 257}},
    "short-jwt-secret": {"auth": {"jwtSecret": "short"}},
    "unknown-algorithm": {"auth": {"algorithms": "none"}},
    "rs256-without-a-public-key": {"auth": {"algorithms": "RS256"}},
    "http-redis-url": {"redis": {"url": "http://redis:6379"}},
    "no-redis-at-all": {"redis": {"bundled": {"enabled": False}}},
    "bad-appendfsync": {"redis": {"bundled": {"appendfsync": "sometimes"}}},
    "typo-in-a-key": {"gateway": {"replica": 3}},
    "unknown-top-level-key": {"shards": {"replicas": 3}},
    "env-without-lq-prefix": {"gateway": {"env": {"PORT": "1"}}},
    "env-value-not-a-string": {"shard": {"env": {"LQ_TAIL_COUNT": 1000}}},
    "bad-anti-affinity": {"shard": {"antiAffinity": "maybe"}},
    "bad-ingress-host": {"ingress": {"enabled": True, "host": "not a host"}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_the_schema_refuses_bad_values(chart: helm_python.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
    with pytest.raises(helm_python.HelmError):
        chart.render(values, name="demo", namespace="lq")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_schema_accepts_the_value_sets(
    chart: helm_python.Chart, values: dict[str, Any]
) -> None:
    chart.validate_schema(chart.merge_values(values))


def test_notes_say_how_to_get_a_token_and_connect(chart: helm_python.Chart) -> None:
    notes = chart.render({}, name="demo", namespace="lq")["lq/templates/NOTES.txt"]
    assert "lq token --tenant" in notes and "port-forward svc/demo-lq-gateway" in notes
    assert "/v1/ws" in notes and "lq status" in notes
    notes = chart.render(VALUE_SETS["ingress-hpa"], name="demo", namespace="lq")[
        "lq/templates/NOTES.txt"]
    assert "https://lq.example.com" in notes
