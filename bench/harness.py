"""What the benchmarks share: free ports, throwaway databases, and a service run as its own
process (`python -m services.<name>`) exactly as its container would run it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import grpc
import psutil
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.servers import Infrastructure

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 45.0


def python_command() -> str:
    """This interpreter as a reader would type it: relative to the working directory when inside it."""
    executable, here = Path(sys.executable), Path.cwd()
    return str(executable.relative_to(here) if executable.is_relative_to(here) else executable)


class SetupError(RuntimeError):
    """Something the benchmark needs did not start; the run measures nothing."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def fresh_database(infrastructure: Infrastructure) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(infrastructure.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = infrastructure.database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(infrastructure.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def service_process(
    name: str, env: Mapping[str, str], grpc_port: int, log_path: Path
) -> AsyncIterator[psutil.Process]:
    """`python -m services.<name>` in its own session, yielded once its health check says
    SERVING; SIGTERM at the end, SIGKILL if it lingers."""
    process = _spawn(name, env, log_path)
    try:
        await _wait_serving(name, process, grpc_port, log_path)
        yield psutil.Process(process.pid)
    finally:
        await _stop(process)


@contextlib.asynccontextmanager
async def http_service_process(
    name: str, env: Mapping[str, str], health_url: str, log_path: Path, *, module: str = ""
) -> AsyncIterator[psutil.Process]:
    """The same for a service that speaks HTTP (the gateway): yielded once `health_url` answers 200.
    `module` runs another module than `services.<name>` (the provider simulator)."""
    process = _spawn(name, env, log_path, module=module)
    try:
        await _wait_http_ok(name, process, health_url, log_path)
        yield psutil.Process(process.pid)
    finally:
        await _stop(process)


async def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


async def _wait_http_ok(name: str, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        while True:
            if process.poll() is not None:
                raise SetupError(f"the {name} service exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as answer:
                    if answer.status == 200:
                        return
            if time.monotonic() > deadline:
                raise SetupError(f"the {name} service did not answer {url} in {STARTUP_TIMEOUT_SECONDS:.0f}s")
            await asyncio.sleep(0.2)  # a readiness probe, not waiting for an outcome


def _spawn(name: str, env: Mapping[str, str], log_path: Path, *, module: str = "") -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", module or f"services.{name}"],
            # No /metrics: the default port (9464) would clash between benchmark processes.
            env={**env, "METRICS_PORT": "0"},
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _wait_serving(name: str, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise SetupError(f"the {name} service exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise SetupError(f"the {name} service was not serving after {STARTUP_TIMEOUT_SECONDS:.0f}s")
            await asyncio.sleep(0.2)  # a readiness probe, not waiting for an outcome


def run_in_workdir(
    name: str,
    run: Callable[[Path], Coroutine[Any, Any, T]],
    report: Callable[[T], Iterable[str]],
    *,
    keep_logs: bool,
) -> int:
    """A benchmark's `main`: run it in a fresh work directory, print its report, exit code 1 only
    when setup failed (the logs then stay for reading)."""
    workdir = Path(tempfile.mkdtemp(prefix="vidflow-bench-"))
    try:
        result = asyncio.run(run(workdir))
    except Exception as exc:
        print(f"{name}: setup failed: {exc!r} (logs kept in {workdir})", file=sys.stderr)
        return 1
    for text in report(result):
        print(text)
    if keep_logs:
        print(f"logs: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
