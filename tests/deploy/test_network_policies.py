"""The NetworkPolicies allow exactly the connections the configuration makes, and nothing from outside
but the Ingress to the gateway and Prometheus to the metrics ports."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.deploy.netpol import Peer, outside, pod, policies
from tests.deploy.rendered import OVERLAYS, SERVICES, Manifest, Rendered, named_ports, pod_labels, rendered

DNS = Peer("kube-system", {"k8s-app": "kube-dns"})
INGRESS_CONTROLLER = Peer("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
ELSEWHERE = Peer("some-other-team", {"app": "curious"})
INTERNET = outside("203.0.113.77")
DEFAULT_PORTS = {"http": 80, "https": 443, "nats": 4222, "postgresql": 5432, "postgres": 5432}
# Where prod's dependencies live (prod's dependencies.yaml and config/*.env); addresses are examples
# from the documentation ranges.
PROD_DEPENDENCIES = {
    "postgres": (Peer("databases", {"cnpg.io/cluster": "vidflow-pg"}), 5432),
    "nats": (Peer("nats", {"app.kubernetes.io/name": "nats"}), 4222),
    "s3": (outside("198.51.100.20"), 443),
    "vendor": (outside("203.0.113.30"), 443),
    "gpu-pool": (Peer("video", {"app.kubernetes.io/name": "vllm-omni"}), 8000),
    "otlp": (Peer("monitoring", {"app.kubernetes.io/name": "otel-collector"}), 4317),
}


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> Rendered:
    return rendered(request.param)


def _is_migration(workload: Manifest) -> bool:
    return pod_labels(workload).get("app.kubernetes.io/component") == "migrate"


def _service_behind(manifests: Rendered, host: str, port: int) -> tuple[list[Manifest], int]:
    """The workloads a Service name routes to, and the container port `port` lands on."""
    service = manifests.get("Service", host)
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    selector = service["spec"]["selector"]
    selected = [
        w for w in manifests.workloads() if all(pod_labels(w).get(k) == v for k, v in selector.items())
    ]
    target = entry.get("targetPort", port)
    return selected, named_ports(selected[0])[target] if isinstance(target, str) else target


def _grpc_calls(manifests: Rendered) -> set[tuple[str, str]]:
    """(caller, callee) for every peer address a service is configured with (`*_ADDRESS`)."""
    calls = set()
    for caller in SERVICES:
        env = manifests.container_env(manifests.server(caller))
        for name, value in env.items():
            if name.endswith("_ADDRESS") and name != "GRPC_LISTEN_ADDRESS":
                assert value, f"{caller}: {name} is empty"
                host, _, port = value.rpartition(":")
                callees, _ = _service_behind(manifests, host, int(port))
                calls |= {(caller, callee["metadata"]["name"]) for callee in callees}
    return calls


def test_grpc_calls_between_services_are_exactly_the_configured_ones(manifests):
    calls = _grpc_calls(manifests)
    assert calls == {
        ("gateway", "jobs"),
        ("gateway", "renderer"),
        ("gateway", "billing"),
        ("jobs", "moderation"),
        ("jobs", "billing"),
        ("jobs", "renderer"),
    }
    allow = policies(manifests)
    for caller in SERVICES:
        for callee in SERVICES:
            callee_pod = pod(manifests, manifests.server(callee))
            port = callee_pod.ports.get("grpc") or callee_pod.ports["http"]
            allowed = allow.allows(pod(manifests, manifests.server(caller)), callee_pod, port)
            assert allowed == ((caller, callee) in calls), f"{caller} -> {callee}:{port}"


def _url_destination(manifests: Rendered, url: str) -> tuple[list[Peer], int]:
    parts = urlsplit(url)
    assert parts.hostname, url
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    for suffix in ("-rw", "-ro", "-r"):  # CloudNativePG's Services for a Cluster
        clusters = [
            c for c in manifests.of_kind("Cluster") if parts.hostname == c["metadata"]["name"] + suffix
        ]
        if clusters:
            return [Peer(manifests.namespace, {"cnpg.io/cluster": clusters[0]["metadata"]["name"]})], port
    workloads, container_port = _service_behind(manifests, parts.hostname, port)
    return [pod(manifests, workload) for workload in workloads], container_port


def test_dev_every_configured_url_is_reachable_and_only_by_who_is_configured_with_it():
    manifests = rendered("dev")
    allow = policies(manifests)
    renderer_s3 = manifests.container_env(manifests.server("renderer"))["S3_ENDPOINT"]
    needs: dict[str, dict[str, str]] = {}
    for workload in manifests.workloads():
        env = manifests.container_env(workload)
        urls = {
            name: value
            for name, value in env.items()
            if value
            and name
            in {"DATABASE_URL", "NATS_URL", "S3_ENDPOINT", "PROVIDER_BASE_URL", "SIMULATOR_WEBHOOK_URL"}
        }
        if _is_migration(workload):
            urls = {"DATABASE_URL": urls["DATABASE_URL"]}  # migrating connects to PostgreSQL only
        if workload["metadata"]["name"] == "gateway" and workload["kind"] == "Deployment":
            assert renderer_s3
            urls["S3_ENDPOINT"] = renderer_s3  # downloads are relayed from the renderer's presigned URLs
        needs[f"{workload['kind']}/{workload['metadata']['name']}"] = urls
    destinations = {url for urls in needs.values() for url in urls.values()}
    assert len(destinations) == 5, destinations  # PostgreSQL, NATS, MinIO, the simulator, the gateway
    for url in destinations:
        peers, port = _url_destination(manifests, url)
        for workload in manifests.workloads():
            key = f"{workload['kind']}/{workload['metadata']['name']}"
            source = pod(manifests, workload)
            wanted = url in needs[key].values()
            if any(source.labels == peer.labels for peer in peers):
                continue  # a pod talking to itself is not a network path
            assert all(allow.allows(source, peer, port) == wanted for peer in peers), f"{key} -> {url}"


def test_prod_reaches_its_dependencies_where_they_live():
    manifests = rendered("prod")
    allow = policies(manifests)
    env_of = {w["metadata"]["name"]: manifests.container_env(w) for w in manifests.workloads()}
    assert urlsplit(env_of["jobs"]["NATS_URL"]).hostname == "nats.nats.svc.cluster.local"
    assert urlsplit(env_of["renderer"]["S3_ENDPOINT"]).scheme == "https"
    for workload in manifests.workloads():
        name = workload["metadata"]["name"]
        env = env_of[name]
        source = pod(manifests, workload)
        migrating = _is_migration(workload)
        expected = {
            "postgres": "DATABASE_URL" in env,
            "nats": "NATS_URL" in env and not migrating,
            "s3": ("S3_ENDPOINT" in env or name == "gateway") and not migrating,
            # Public HTTPS: jobs for the hosted vendor, the gateway for clients' webhooks.
            "vendor": name in {"jobs", "gateway"},
            "gpu-pool": name == "jobs",
            "otlp": True,
        }
        for dependency, (peer, port) in PROD_DEPENDENCIES.items():
            assert allow.allows(source, peer, port) == expected[dependency], f"{name} -> {dependency}"


def test_every_pod_resolves_names(manifests):
    allow = policies(manifests)
    for workload in manifests.workloads():
        assert allow.allows(pod(manifests, workload), DNS, 53, "UDP"), workload["metadata"]["name"]


def test_from_outside_only_the_gateway_and_the_metrics_ports_are_reachable(manifests):
    allow = policies(manifests)
    for workload in manifests.workloads():
        name = workload["metadata"]["name"]
        target = pod(manifests, workload)
        for port_name, port in target.ports.items():
            public = name == "gateway" and workload["kind"] == "Deployment" and port_name == "http"
            scraped = name in SERVICES and workload["kind"] == "Deployment" and port_name == "metrics"
            assert allow.allows(INGRESS_CONTROLLER, target, port) == public, f"{name}:{port_name}"
            assert allow.allows(PROMETHEUS, target, port) == scraped, f"{name}:{port_name}"
            assert not allow.allows(ELSEWHERE, target, port), f"{name}:{port_name}"
            assert not allow.allows(INTERNET, target, port), f"{name}:{port_name}"
