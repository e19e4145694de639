"""The container images, checked from their Dockerfiles: no Docker engine runs here or in CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import DOCKER, IMAGES, dockerfile, dockerignore_excludes
from tests.deploy.rendered import REPO, SERVICES, named_ports, rendered
from tests.deploy.source_scan import (
    image_sources,
    imported_modules,
    installed_closure,
    module_file,
    providers,
    third_party,
)

# A full patch version and a Debian release: the tag names one Python build, not a moving line.
PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-[a-z]+")
MODULES = {**{service: f"services.{service}" for service in SERVICES}, "simulator": "simulator"}


def image_requirements(image: str) -> list[str]:
    """Exactly what the build stage runs to choose the image's dependencies."""
    result = subprocess.run(
        [
            sys.executable,
            str(DOCKER / "service_requirements.py"),
            "--pyproject",
            str(REPO / "pyproject.toml"),
            image,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.split()


def test_there_is_one_dockerfile_per_service_and_the_simulator():
    assert sorted(path.name for path in DOCKER.glob("*.Dockerfile")) == sorted(
        f"{i}.Dockerfile" for i in IMAGES
    )


@pytest.mark.parametrize("image", IMAGES)
def test_builds_in_one_stage_and_runs_in_another_on_a_pinned_python(image):
    built = dockerfile(image)
    assert len(built.stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert built.stages[0].alias == "builder"
    for stage in built.stages:
        assert PINNED_PYTHON.fullmatch(stage.base), f"{stage.base}: pin python:3.11.<patch>-slim-<release>"
    assert len({stage.base for stage in built.stages}) == 1, "the venv built in one must run in the other"
    # The runtime stage takes only built artefacts from the builder, never sources from the context.
    runtime_copies = built.runtime.all("COPY")
    assert runtime_copies and all(copy.startswith("--from=builder ") for copy in runtime_copies)


@pytest.mark.parametrize("image", IMAGES)
def test_the_build_stage_generates_the_protobuf_code_and_installs_pinned_dependencies(image):
    runs = " ".join(dockerfile(image).stages[0].all("RUN"))
    assert (
        "grpc_tools.protoc" in runs and "--python_out=protos" in runs and "--grpc_python_out=protos" in runs
    )
    assert f"service_requirements.py {image} > requirements.txt" in runs
    assert "pip install -r requirements.txt" in runs
    assert all("==" in line for line in image_requirements(image))


@pytest.mark.parametrize("image", IMAGES)
def test_runs_as_a_numeric_non_root_user(image):
    users = dockerfile(image).runtime.all("USER")
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


@pytest.mark.parametrize("image", IMAGES)
def test_entrypoint_is_the_module_of_that_image(image):
    assert dockerfile(image).entrypoint() == ["python", "-m", MODULES[image]]


@pytest.mark.parametrize("image", IMAGES)
def test_carries_its_own_code_and_every_module_of_ours_it_imports(image):
    copied = image_sources(image)
    own = Path("simulator") if image == "simulator" else Path("services") / image
    assert own in copied and Path("lib/servicekit") in copied

    def carried(file: Path) -> bool:
        return any(file == source or source in file.parents for source in copied)

    needed: dict[str, str] = {}
    for module, importer in imported_modules(copied).items():
        file = module_file(module)
        if file is not None and not carried(file):
            needed[module] = str(importer.relative_to(REPO))
    assert not needed, f"{image} imports code its image does not copy: {needed}"
    # And nothing beyond that: another service's file is copied only because this code imports it.
    imported_files = {module_file(module) for module in imported_modules(copied)}
    extra = [source for source in copied if source not in (own, Path("lib/servicekit"))]
    assert all(source in imported_files for source in extra), extra


@pytest.mark.parametrize("image", IMAGES)
def test_every_third_party_import_is_installed_in_the_image(image):
    installed = installed_closure(image_requirements(image))
    missing = {
        module: str(path.relative_to(REPO))
        for module, path in third_party(imported_modules(image_sources(image))).items()
        if not providers(module) & installed
    }
    assert not missing, f"{image} imports modules no dependency of its image provides: {missing}"


def test_media_libraries_stay_out_of_images_that_do_not_decode_media():
    assert {"av", "pillow", "imageio-ffmpeg"}.isdisjoint(installed_closure(image_requirements("gateway")))
    assert "av" not in installed_closure(image_requirements("moderation"))


def test_renderer_carries_debian_ffmpeg_and_uses_it():
    runtime = dockerfile("renderer").runtime
    assert any(re.search(r"apt-get install .*\bffmpeg\b", run) for run in runtime.all("RUN"))
    assert runtime.environment()["RENDERER_FFMPEG"] == "/usr/bin/ffmpeg"
    for overlay in ("dev", "prod"):
        manifests = rendered(overlay)
        assert manifests.container_env(manifests.server("renderer"))["RENDERER_FFMPEG"] == "/usr/bin/ffmpeg"


@pytest.mark.parametrize("service", SERVICES)
def test_exposes_the_ports_its_deployment_declares(service):
    exposed = {int(port) for line in dockerfile(service).runtime.all("EXPOSE") for port in line.split()}
    assert set(named_ports(rendered("dev").server(service)).values()) == exposed


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("services/jobs/app.py", False),
        ("services/renderer/migrations/versions/0001_assets.py", False),
        ("lib/servicekit/grpcserver.py", False),
        ("protos/vidflow/jobs/v1/jobs.proto", False),
        ("simulator/app.py", False),
        ("pyproject.toml", False),
        ("deploy/docker/service_requirements.py", False),
        (".venv/bin/python", True),
        (".git/config", True),
        (".devstack/logs/jobs.log", True),
        ("protos/vidflow/jobs/v1/jobs_pb2.py", True),
        ("services/jobs/tests/test_store.py", True),
        ("lib/servicekit/tests/test_errors.py", True),
        ("services/jobs/__pycache__/app.cpython-311.pyc", True),
        ("tests/conftest.py", True),
        ("bench/harness.py", True),
        ("deploy/k8s/overlays/dev/secrets/jobs.env", True),
    ],
)
def test_build_context_holds_sources_only(path, excluded):
    assert dockerignore_excludes(path) is excluded
