"""Each service started the way its pod starts it: the image's ENTRYPOINT, the environment the dev
overlay's ConfigMaps and Secrets give its container, its migrate Job first. Then the probes its
Deployment declares must pass, and SIGTERM must stop it cleanly within its grace period.

Only where things are differs from a cluster: the settings naming PostgreSQL, NATS, S3, listen,
metrics and peer ports point at this machine (the session's servers, a fresh database per service,
a uuid bucket, free loopback ports), and ffmpeg is the venv's instead of Debian's /usr/bin/ffmpeg.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import grpc
import imageio_ffmpeg
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.servers import Infrastructure
from tests.deploy.dockerfiles import dockerfile
from tests.deploy.rendered import REPO, Manifest, Rendered, containers, pod_spec, rendered
from tests.helpers import eventually

pytestmark = pytest.mark.integration
# Callees first, so each caller finds its peers serving (the gateway is ready only when jobs is).
START_ORDER = ("moderation", "billing", "renderer", "jobs", "gateway")
STARTUP_DEADLINE_SECONDS = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _fresh_databases(infrastructure: Infrastructure, count: int) -> Iterator[list[str]]:
    names = [f"test_{uuid.uuid4().hex}" for _ in range(count)]
    with psycopg.connect(infrastructure.database_url, autocommit=True, connect_timeout=10) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [urlunsplit(urlsplit(infrastructure.database_url)._replace(path=f"/{name}")) for name in names]
    finally:
        with psycopg.connect(infrastructure.database_url, autocommit=True, connect_timeout=10) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _image_command(service: str, container: Manifest) -> list[str]:
    """ENTRYPOINT + the container's args, with this venv's python for the image's."""
    entrypoint = dockerfile(service).entrypoint()
    assert entrypoint[0] == "python"
    return [sys.executable, *entrypoint[1:], *container.get("args", [])]


def _environment(service: str, workload: Manifest, here: dict[str, str]) -> dict[str, str]:
    """The image's ENV, then the container's env from the manifests, then `here` for the settings
    the container sets (and only those) that name places on this machine."""
    manifests = rendered("dev")
    image = {
        k: v for k, v in dockerfile(service).runtime.environment().items() if k not in {"PATH", "PYTHONPATH"}
    }
    container = manifests.container_env(workload, pod_name=f"{workload['metadata']['name']}-0")
    assert all(value is not None for value in container.values())
    env: dict[str, str] = {**image, **{k: v for k, v in container.items() if v is not None}}
    env.update({key: value for key, value in here.items() if key in env})
    # The image's PATH starts with its venv; HOME is the image user's.
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/nonexistent",
        **env,
    }


async def _probe_passes(probe: Manifest, port: int) -> bool:
    """One run of a kubelet probe, against the port this test gave the service."""
    if "grpc" in probe:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=2
                )
            except grpc.aio.AioRpcError:
                return False
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=aiohttp.ClientTimeout(total=3)
            ) as response,
        ):
            return 200 <= response.status < 400
    except aiohttp.ClientError:
        return False


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""


async def test_each_service_starts_from_its_manifests_and_passes_its_probes(
    infrastructure, s3_bucket, tmp_path
):
    manifests = rendered("dev")
    ports = {service: _free_port() for service in START_ORDER}
    loopback = {service: f"127.0.0.1:{port}" for service, port in ports.items()}
    processes: dict[str, asyncio.subprocess.Process] = {}
    with _fresh_databases(infrastructure, len(START_ORDER)) as databases:
        try:
            for service, database_url in zip(START_ORDER, databases, strict=True):
                here = {
                    **infrastructure.as_environ(),
                    "DATABASE_URL": database_url,
                    "S3_BUCKET": s3_bucket,
                    "GRPC_LISTEN_ADDRESS": loopback[service],
                    "GATEWAY_HOST": "127.0.0.1",
                    "GATEWAY_PORT": str(ports["gateway"]),
                    "JOBS_ADDRESS": loopback["jobs"],
                    "MODERATION_ADDRESS": loopback["moderation"],
                    "BILLING_ADDRESS": loopback["billing"],
                    "RENDERER_ADDRESS": loopback["renderer"],
                    "METRICS_PORT": str(_free_port()),
                    "RENDERER_FFMPEG": imageio_ffmpeg.get_ffmpeg_exe(),
                    # The overlay's NATS is three servers; the test's is one, which keeps one copy.
                    "NATS_STREAM_REPLICAS": "1",
                }
                job = manifests.migration(service)
                (migrate,) = containers(job)
                migrating = await asyncio.create_subprocess_exec(
                    *_image_command(service, migrate),
                    env=_environment(service, job, here),
                    cwd=REPO,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                output, _ = await asyncio.wait_for(migrating.communicate(), 180)
                assert migrating.returncode == 0, f"{service} migrate:\n{output.decode()[-3000:]}"

                server = manifests.server(service)
                (container,) = containers(server)
                log = tmp_path / f"{service}.log"
                with log.open("wb") as log_file:
                    processes[service] = await asyncio.create_subprocess_exec(
                        *_image_command(service, container),
                        env=_environment(service, server, here),
                        cwd=REPO,
                        stdout=log_file,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                    )
                probes = [container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")]

                async def all_pass(service: str = service, probes: list[Manifest] = probes) -> bool | None:
                    if processes[service].returncode is not None:
                        raise AssertionError(f"{service} exited:\n{_tail(tmp_path / f'{service}.log')}")
                    results = [await _probe_passes(probe, ports[service]) for probe in probes]
                    return True if all(results) else None

                await eventually(all_pass, deadline_seconds=STARTUP_DEADLINE_SECONDS, interval=0.25)
        finally:
            exits = await _stop_like_the_kubelet(manifests, processes)
    assert exits == dict.fromkeys(processes, 0), {
        s: _tail(tmp_path / f"{s}.log") for s, c in exits.items() if c
    }
    assert set(exits) == set(START_ORDER)


async def _stop_like_the_kubelet(
    manifests: Rendered, processes: dict[str, asyncio.subprocess.Process]
) -> dict[str, int]:
    """SIGTERM, callers first; a process still running after its terminationGracePeriodSeconds is
    killed, as the kubelet would, and reported with its exit code."""
    exits: dict[str, int] = {}
    for service in reversed(list(processes)):
        process = processes[service]
        grace = pod_spec(manifests.server(service))["terminationGracePeriodSeconds"]
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            exits[service] = await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            exits[service] = await process.wait()
    return exits
