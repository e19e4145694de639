"""Every setting reaches the containers: the README's configuration table and whatever the code reads,
secrets only from Secrets, and each service only its own credentials."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.rendered import OVERLAYS, REPO, SERVICES, Rendered, rendered
from tests.deploy.source_scan import image_sources, settings_read

# Set on purpose in no container of that overlay.
NOT_SET = {
    "prod": {
        "gateway": {"VIDFLOW_DEV_API_KEY": "no dev user in production"},
        "jobs": {"PROVIDER_API_KEY": "the provider registry names each deployment's key variable instead"},
    },
}
# In the containers although no code reads them, with the reason.
UNREAD = {
    "PROVIDER_WEBHOOKS": "in the README's table for jobs, but services/jobs/config.py does not read it (yet)",
}
_SECRET_NAME = re.compile(r"DATABASE_URL|.*_(API_KEY|ACCESS_KEY|SECRET_KEY|SECRET|SECRETS|USER|PASSWORD)")
_WHO = {
    "all": SERVICES,
    "all but simulator": SERVICES,
    "each gRPC service": ("jobs", "moderation", "renderer", "billing"),
}


def is_secret(name: str) -> bool:
    return bool(_SECRET_NAME.fullmatch(name))


class _RecordingEnviron(dict[str, str]):
    """os.environ stand-in that remembers every name looked up, whatever code path looks."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


@pytest.fixture(scope="module")
def settings_each_service_reads() -> dict[str, set[str]]:
    """What each service reads: literal names in its code (and servicekit's), plus the names its
    Settings.from_env looks up when loading the dev overlay's environment (names built in loops)."""
    manifests = rendered("dev")
    reads: dict[str, set[str]] = {}
    for service in SERVICES:
        static = set(settings_read(image_sources(service)))
        env = {k: v for k, v in manifests.container_env(manifests.server(service)).items() if v is not None}
        recorder = _RecordingEnviron(env)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "environ", recorder)
            importlib.import_module(f"services.{service}.config").Settings.from_env()
        reads[service] = static | recorder.read
    return reads


def _registry_key_variables(manifests: Rendered) -> set[str]:
    """The api_key_env of every deployment in the provider registry the jobs service mounts, if any."""
    from services.jobs.domain.routing import parse_registry

    env = manifests.container_env(manifests.server("jobs"))
    path = env.get("PROVIDER_REGISTRY_FILE")
    if not path:
        return set()
    registries = [
        doc
        for doc in manifests.of_kind("ConfigMap")
        if doc["metadata"]["name"].startswith("provider-registry")
    ]
    (registry,) = registries
    text = registry["data"][Path(path).name]
    return {deployment.api_key_env for deployment in parse_registry(text).deployments.values()}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_container_gets_every_setting_its_code_reads_and_no_other(
    overlay, service, settings_each_service_reads
):
    manifests = rendered(overlay)
    env = set(manifests.container_env(manifests.server(service)))
    reads = settings_each_service_reads[service]
    if service == "jobs":
        reads = reads | _registry_key_variables(manifests)
    omitted = NOT_SET.get(overlay, {}).get(service, {})
    assert sorted(reads - env - set(omitted)) == []
    assert not set(omitted) & env
    assert sorted(env - reads - set(UNREAD)) == []


def _readme_rows() -> list[tuple[list[str], list[str]]]:
    """(variables, services) per row of the README's configuration table, shorthand expanded."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        tokens = re.findall(r"`([^`]+)`", cells[0])
        names: list[str] = []
        for token in tokens:
            if token.startswith("_"):  # `MODERATION_CATEGORIES` / `_FILE`: a suffix for the first name
                names.append(token)
                continue
            braces = re.fullmatch(r"\{([A-Z,]+)\}(_[A-Z_]+)", token)
            names += (
                [f"{part}{braces.group(2)}" for part in braces.group(1).split(",")] if braces else [token]
            )
        who = cells[1]
        services = list(_WHO.get(who, [s for s in SERVICES if re.search(rf"\b{s}\b", who)]))
        if "simulator" in who.split(", ") or who == "simulator":
            services.append("simulator")
        rows.append((names, services))
    return rows


def _expand_suffix(first: str, suffix: str, known: set[str]) -> str:
    for candidate in (first + suffix, first.rsplit("_", 1)[0] + suffix):
        if candidate in known:
            return candidate
    raise AssertionError(f"README shorthand {first} / {suffix}: no such setting in the code")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_of_the_readme_table_reaches_the_services_it_names(
    overlay, settings_each_service_reads
):
    manifests = rendered(overlay)
    known = set().union(*settings_each_service_reads.values())
    env = {service: set(manifests.container_env(manifests.server(service))) for service in SERVICES}
    if overlay == "dev":
        env["simulator"] = set(manifests.container_env(manifests.get("Deployment", "simulator")))
    missing = []
    rows = _readme_rows()
    assert len(rows) > 30, "the README's configuration table was not found"
    for names, services in rows:
        first = names[0]
        for name in names:
            name = _expand_suffix(first, name, known) if name.startswith("_") else name
            for service in services:
                omitted = NOT_SET.get(overlay, {}).get(service, {})
                if service not in env or name in omitted:
                    continue
                present = (
                    any(v.startswith(name[:-1]) for v in env[service])
                    if name.endswith("*")
                    else name in env[service]
                )
                if not present:
                    missing.append(f"{name} ({service})")
    assert not missing, f"{overlay}: README settings no container gets: {missing}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_secrets_and_each_service_gets_only_its_own(overlay, settings_each_service_reads):
    manifests = rendered(overlay)
    registry_keys = _registry_key_variables(manifests)
    for workload in manifests.workloads():
        for kind, name, values in manifests.config_sources(workload):
            if kind == "ConfigMap":
                assert not [key for key in values if is_secret(key)], f"ConfigMap {name} holds secrets"
            else:
                assert all(is_secret(key) or key in registry_keys for key in values), (
                    f"Secret {name}: {list(values)}"
                )
    for service in SERVICES:
        secrets = {
            key
            for kind, _, values in manifests.config_sources(manifests.server(service))
            if kind == "Secret"
            for key in values
        }
        allowed = settings_each_service_reads[service] | (registry_keys if service == "jobs" else set())
        assert secrets <= allowed, f"{service} is handed credentials it never reads: {secrets - allowed}"
