"""Both overlays, rendered by the pinned kubectl: schema-valid, hardened, probed, sized and scaled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.netpol import pod, policies
from tests.deploy.rendered import (
    OVERLAYS,
    SERVICES,
    Manifest,
    Rendered,
    containers,
    named_ports,
    pod_labels,
    pod_spec,
    rendered,
    selector_matches,
)
from tests.deploy.source_scan import writes_temporary_files

# Custom resources kubernetes-validate has no schema for, skipped by name and only these; any other
# kind without a schema fails the validation test below.
CUSTOM_RESOURCES = {
    ("postgresql.cnpg.io/v1", "Cluster"): "CloudNativePG's PostgreSQL cluster (dev overlay)",
    ("external-secrets.io/v1", "ExternalSecret"): "External Secrets Operator (prod overlay)",
}
# The oldest Kubernetes the manifests target (the native preStop `sleep` needs 1.30+) and the newest.
KUBERNETES_VERSIONS = ("1.33", "1.37")
LONG_RUNNING = ("Deployment", "StatefulSet")
AUTOSCALED = {"gateway", "jobs", "renderer"}


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> Rendered:
    return rendered(request.param)


def test_overlay_passes_kubernetes_validate_strict(manifests, tmp_path):
    builtin = [doc for doc in manifests.docs if (doc["apiVersion"], doc["kind"]) not in CUSTOM_RESOURCES]
    path = tmp_path / f"{manifests.overlay}.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    versions = [argument for version in KUBERNETES_VERSIONS for argument in ("-k", version)]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", *versions, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # A kind without a schema is only a warning to the tool; here it is a failure.
    assert "WARN" not in output and "ERROR" not in output, output
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(builtin) * len(KUBERNETES_VERSIONS)


def _effective(container: Manifest, pod: Manifest, field: str) -> Any:
    return container.get("securityContext", {}).get(field, pod.get("securityContext", {}).get(field))


def test_every_container_has_probes_resources_and_a_locked_down_context(manifests):
    problems: list[str] = []
    for workload in manifests.workloads():
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token")
        for container in containers(workload):
            at = f"{where}/{container['name']}"
            if workload["kind"] in LONG_RUNNING:  # a Job's pod finishes; it has nothing to probe
                problems += [
                    f"{at}: no {probe}"
                    for probe in ("readinessProbe", "livenessProbe")
                    if probe not in container
                ]
            resources = container.get("resources", {})
            problems += [
                f"{at}: no {kind} {name}"
                for kind in ("requests", "limits")
                for name in ("cpu", "memory")
                if name not in resources.get(kind, {})
            ]
            context = container.get("securityContext", {})
            if _effective(container, spec, "runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot")
            if _effective(container, spec, "runAsUser") in (None, 0):
                problems.append(f"{at}: runAsUser must be a non-zero uid")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation")
            capabilities = context.get("capabilities", {})
            if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
                problems.append(f"{at}: capabilities must drop ALL and add none")
            if (_effective(container, spec, "seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile RuntimeDefault")
    assert not problems, "\n".join(problems)


def test_every_service_routes_to_pods_a_network_policy_admits(manifests):
    allow = policies(manifests)
    for service in manifests.of_kind("Service"):
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        selected = [
            w for w in manifests.workloads() if all(pod_labels(w).get(k) == v for k, v in selector.items())
        ]
        assert selected, f"Service {name} selects no pods"
        # A migration Job's pod is never ready for traffic.
        assert all(workload["kind"] in LONG_RUNNING for workload in selected), name
        for workload in selected:
            target = pod(manifests, workload)
            for port in service["spec"]["ports"]:
                wanted = port.get("targetPort", port["port"])
                number = named_ports(workload)[wanted] if isinstance(wanted, str) else wanted
                admitting = [p for p in allow.admitting_ingress(target, number) if p != "default-deny"]
                assert admitting, f"Service {name}: no NetworkPolicy admits port {number} of its pods"


def test_service_accounts_mount_no_token(manifests):
    accounts = manifests.of_kind("ServiceAccount")
    assert {account["metadata"]["name"] for account in accounts} >= set(SERVICES)
    assert all(account.get("automountServiceAccountToken") is False for account in accounts)
    for workload in manifests.workloads():
        assert pod_spec(workload)["serviceAccountName"] in {a["metadata"]["name"] for a in accounts}


def _drain_seconds(service: str, env: dict[str, str | None]) -> float:
    if service == "gateway":
        return float(env["GATEWAY_SHUTDOWN_SECONDS"] or 0)
    drain = float(env["GRPC_DRAIN_SECONDS"] or 0)
    if service == "jobs":
        # After the gRPC drain the worker lets running steps finish for a quarter of the lease
        # (JobWorker._drain in services/jobs/worker.py).
        drain += float(env["JOBS_LEASE_SECONDS"] or 0) / 4
    return drain


@pytest.mark.parametrize("service", SERVICES)
def test_stop_grace_outlasts_the_pre_stop_pause_and_the_drain(manifests, service):
    deployment = manifests.server(service)
    (container,) = containers(deployment)
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    drain = _drain_seconds(service, manifests.container_env(deployment))
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pause + drain


def _port_of(address: str | None) -> int:
    assert address
    return int(address.rsplit(":", 1)[1])


@pytest.mark.parametrize("service", SERVICES)
def test_probes_ask_the_port_the_service_listens_on(manifests, service):
    deployment = manifests.server(service)
    (container,) = containers(deployment)
    env = manifests.container_env(deployment)
    probes = {
        kind: container[kind]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container
    }
    if service == "gateway":
        port = int(env["GATEWAY_PORT"] or 0)
        assert all(named_ports(deployment)[probe["httpGet"]["port"]] == port for probe in probes.values())
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    else:
        port = _port_of(env["GRPC_LISTEN_ADDRESS"])
        # Native gRPC probes ask grpc.health.v1 for the overall ("") service.
        assert all(probe["grpc"] == {"port": port} for probe in probes.values())
        assert named_ports(deployment)["grpc"] == port
    metrics = int(env["METRICS_PORT"] or 0)
    assert named_ports(deployment)["metrics"] == metrics
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics) and annotations["prometheus.io/scrape"] == "true"


def test_code_that_writes_temporary_files_gets_a_writable_tmp(manifests):
    code = {service: Path("services") / service for service in SERVICES}
    if manifests.overlay == "dev":
        code["simulator"] = Path("simulator")
    for name, folder in code.items():
        workload = manifests.get("Deployment", name)
        volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
        mounts = {
            mount["mountPath"]: mount["name"]
            for c in containers(workload)
            for mount in c.get("volumeMounts", [])
        }
        if writes_temporary_files(folder):
            assert "/tmp" in mounts, f"{name} writes temporary files on a read-only root filesystem"
            assert "sizeLimit" in volumes[mounts["/tmp"]]["emptyDir"]
        else:
            assert "/tmp" not in mounts, f"{name} writes no temporary files: no /tmp volume needed"


def test_autoscaling_replicas_and_disruption_budgets(manifests):
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in manifests.of_kind("HorizontalPodAutoscaler")
    }
    assert set(autoscalers) == AUTOSCALED
    smallest = 1 if manifests.overlay == "dev" else 2
    for name, hpa in autoscalers.items():
        # Applying the manifests must not reset what the autoscaler chose.
        assert "replicas" not in manifests.server(name)["spec"]
        assert smallest <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert any(metric["resource"]["name"] == "cpu" for metric in hpa["spec"]["metrics"])
    for service in set(SERVICES) - AUTOSCALED:
        replicas = manifests.server(service)["spec"]["replicas"]
        assert replicas == 1 if manifests.overlay == "dev" else replicas >= 2
    if manifests.overlay == "dev":
        assert all(hpa["spec"]["minReplicas"] == 1 for hpa in autoscalers.values())
    budgets = manifests.of_kind("PodDisruptionBudget")
    for workload in manifests.of_kind(*LONG_RUNNING):
        covering = [b for b in budgets if selector_matches(b["spec"]["selector"], pod_labels(workload))]
        assert len(covering) == 1, f"{workload['metadata']['name']}: {len(covering)} disruption budgets"


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_run_as_a_job_with_the_server_image_and_settings(manifests, service):
    server, job = manifests.server(service), manifests.migration(service)
    (serving,) = containers(server)
    (migrating,) = containers(job)
    assert migrating["args"] == ["migrate"]  # python -m services.<name> migrate
    assert migrating["image"] == serving["image"]
    # The entrypoint loads every setting before it migrates, so the Job reads the same ones.
    assert migrating["envFrom"] == serving["envFrom"]
    config_volumes = [v for v in pod_spec(server).get("volumes", []) if "configMap" in v]
    assert all(volume in pod_spec(job).get("volumes", []) for volume in config_volumes)
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"} and job["spec"]["backoffLimit"] > 0


def test_images_are_tagged_per_overlay(manifests):
    ours = {f"vidflow/{name}" for name in (*SERVICES, "simulator")}
    for workload in manifests.workloads():
        for container in containers(workload):
            name, _, tag = container["image"].rpartition(":")
            assert name and tag and tag != "latest", container["image"]
            if manifests.overlay == "prod" and "/vidflow/" in name:
                assert name.startswith("registry.example.com/vidflow/") and tag == "0.1.0"
            if manifests.overlay == "dev" and name in ours:
                assert tag == "dev"


def test_dev_runs_its_dependencies_in_the_namespace_and_prod_references_them(manifests):
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests.docs}
    in_namespace = {
        ("Cluster", "vidflow-pg"),
        ("StatefulSet", "nats"),
        ("Deployment", "minio"),
        ("Deployment", "simulator"),
    }
    if manifests.overlay == "dev":
        assert in_namespace <= kinds
        assert manifests.get("StatefulSet", "nats")["spec"]["replicas"] == 3
    else:
        assert not in_namespace & kinds
