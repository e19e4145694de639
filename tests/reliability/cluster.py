"""The whole platform as separate OS processes, for crash tests: kill -9 a service, start it again.

The infrastructure is the session's (PostgreSQL, NATS, S3), with a fresh database and bucket. The
provider simulator and the five services run as `python -m ...` children, each in its own process
group, with the environment `make run` gives them (`devstack.stack.service_environments`) plus the
tuning a crash test needs (short leases, quick polls). `kill9` sends SIGKILL to a service's whole
group (ffmpeg children included, as when a container dies); `restart` starts it again on the same
port with the same environment and returns once its health check passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil
from servicekit.db import make_engine, upgrade_schema

from bench.harness import free_port, fresh_database, http_service_process, service_process
from devstack.servers import Infrastructure
from devstack.stack import StackPorts, StackSecrets, service_environments
from services.billing import app as billing_app
from services.gateway import app as gateway_app
from services.gateway.identity import IdentityStore
from services.jobs import app as jobs_app
from services.moderation import app as moderation_app
from services.renderer import app as renderer_app
from tests.helpers import credit

LOOPBACK = "127.0.0.1"
# Callees first, so stopping in reverse stops callers first; all start together, each waiting only
# for its own health check.
SERVICES = ("moderation", "billing", "renderer", "jobs", "gateway")
_MIGRATED = (moderation_app, billing_app, renderer_app, jobs_app, gateway_app)
# Crashed work is leased again after this long; short, so a test waits seconds, not minutes.
LEASE_SECONDS = 6
_TUNING = {
    "JOBS_LEASE_SECONDS": str(LEASE_SECONDS),
    "JOBS_IDLE_POLL_SECONDS": "0.2",
    "PROVIDER_MIN_POLL_SECONDS": "0.3",
    "PROVIDER_MAX_POLL_SECONDS": "1.0",
    "PROVIDER_TIMEOUT_SECONDS": "10",
    "GRPC_DRAIN_SECONDS": "2",
    "GATEWAY_SHUTDOWN_SECONDS": "2",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Cluster:
    ports: StackPorts
    environments: dict[str, dict[str, str]]
    database_url: str
    nats_url: str
    provider_key: str
    log_dir: Path
    api_keys: dict[str, str] = field(default_factory=dict)  # user id -> key
    # How many times each service was killed, for the test's report.
    kills: dict[str, int] = field(default_factory=dict)
    _running: dict[str, AsyncExitStack] = field(default_factory=dict)
    _processes: dict[str, psutil.Process] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.gateway}"

    @property
    def simulator_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.simulator}/v1"

    @property
    def billing_address(self) -> str:
        return f"{LOOPBACK}:{self.ports.billing}"

    def key(self, user_id: str) -> str:
        return self.api_keys[user_id]

    def log_path(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    def log_tail(self, service: str, lines: int = 40) -> str:
        path = self.log_path(service)
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def kill9(self, service: str) -> None:
        """SIGKILL to the service's process group: no shutdown handler runs, nothing is flushed."""
        process = self._processes.pop(service)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.kills[service] = self.kills.get(service, 0) + 1
        # Reaps the child; the harness's SIGTERM finds nothing left to stop.
        await self._running.pop(service).aclose()

    async def restart(self, service: str) -> None:
        """The same command, port and environment again; returns once it serves."""
        if service in self._running:
            raise RuntimeError(f"{service} is still running; kill9 it first")
        await self._start(service)

    async def _start(self, service: str) -> None:
        env = self.environments[service]
        log_path = self.log_path(service)
        exits = AsyncExitStack()
        try:
            if service == "simulator":
                health = f"{self.simulator_url.removesuffix('/v1')}/healthz"
                process = await exits.enter_async_context(
                    http_service_process(service, env, health, log_path, module="simulator")
                )
            elif service == "gateway":
                health = f"{self.gateway_url}/readyz"
                process = await exits.enter_async_context(
                    http_service_process(service, env, health, log_path)
                )
            else:
                port = int(env["GRPC_LISTEN_ADDRESS"].rpartition(":")[2])
                process = await exits.enter_async_context(service_process(service, env, port, log_path))
        except BaseException:
            await exits.aclose()
            raise
        self._running[service] = exits
        self._processes[service] = process

    async def _stop_all(self) -> None:
        """SIGTERM, callers first (the harness kills what lingers)."""
        for service in (*reversed(SERVICES), "simulator"):
            if service in self._running:
                await self._running.pop(service).aclose()
                self._processes.pop(service, None)


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@contextlib.asynccontextmanager
async def running_cluster(
    infrastructure: Infrastructure,
    base_dir: Path,
    *,
    users: Mapping[str, int],
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """Simulator and services as processes on a fresh database and bucket; `users` (id -> credits)
    get an API key each and their credits. `settings` adds to or overrides the environment."""
    log_dir = base_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    gateway, simulator, jobs, moderation, billing, renderer = _distinct_free_ports(6)
    ports = StackPorts(
        gateway=gateway,
        simulator=simulator,
        jobs=jobs,
        moderation=moderation,
        billing=billing,
        renderer=renderer,
    )
    secrets = StackSecrets.from_env({})
    base = {
        **os.environ,
        **_TUNING,
        # The session's S3 and NATS serve other stacks too: a bucket and a webhook consumer of our own.
        "S3_BUCKET": f"crash-{uuid.uuid4().hex[:20]}",
        "GATEWAY_WEBHOOKS_CONSUMER": f"gateway-webhooks-{uuid.uuid4().hex[:12]}",
        **(settings or {}),
    }
    with fresh_database(infrastructure) as database_url:
        for module in _MIGRATED:
            await asyncio.to_thread(upgrade_schema, database_url, module.MIGRATIONS, module.SCHEMA)
        ours = replace(infrastructure, database_url=database_url)
        cluster = Cluster(
            ports=ports,
            environments=service_environments(ours, ports, secrets, base),
            database_url=database_url,
            nats_url=infrastructure.nats_url,
            provider_key=secrets.provider_api_key,
            log_dir=log_dir,
        )
        try:
            await cluster._start("simulator")
            async with asyncio.TaskGroup() as starting:
                for service in SERVICES:
                    starting.create_task(cluster._start(service))
            await _add_users(cluster, users)
            yield cluster
        finally:
            await cluster._stop_all()


async def _add_users(cluster: Cluster, users: Mapping[str, int]) -> None:
    engine = make_engine(cluster.database_url, pool_size=1)
    try:
        identity = IdentityStore(engine)
        for user_id, credits in users.items():
            key = f"vf_crash_{uuid.uuid4().hex}"
            await identity.ensure_user_with_key(user_id=user_id, name=user_id, role="user", api_key=key)
            cluster.api_keys[user_id] = key
            if credits:
                await credit(cluster.billing_address, user_id, credits, request_id=f"crash-start-{user_id}")
    finally:
        await engine.dispose()
