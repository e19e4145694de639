"""The whole stack in this test process: simulator, five services, real PostgreSQL, NATS and S3.

Services run in-process (each on its own loopback port, talking over real gRPC and HTTP) so one
in-memory span exporter sees every service's spans. `test_make_run.py` covers the same flow
with real child processes, as `make run` starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from servicekit.db import make_engine, upgrade_schema
from servicekit.storage import S3Settings, S3Timeouts
from servicekit.webhooks import new_secret

from devstack.servers import Infrastructure
from services.billing import app as billing_app
from services.billing.config import Settings as BillingSettings
from services.gateway import app as gateway_app
from services.gateway.config import ClientWebhookSettings
from services.gateway.config import Settings as GatewaySettings
from services.gateway.identity import IdentityStore
from services.jobs import app as jobs_app
from services.jobs.config import ProviderSettings, WorkerSettings
from services.jobs.config import Settings as JobsSettings
from services.moderation import app as moderation_app
from services.moderation.config import Settings as ModerationSettings
from services.renderer import app as renderer_app
from services.renderer.config import Settings as RendererSettings
from simulator.app import start_server
from simulator.config import Settings as SimulatorSettings

_SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Records every span of this process. OpenTelemetry allows one global provider per process, so
    an SDK provider already installed gets the processor instead of being replaced."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    return _SPANS


@dataclass
class Stack:
    gateway_url: str
    database_url: str
    nats_url: str
    s3: S3Settings
    billing_address: str
    jobs_address: str
    api_keys: dict[str, str]  # user id -> key
    # The "default" deployment's webhook secret; the gateway takes webhooks at /webhooks/providers/default.
    provider_webhook_secret: str
    simulator_url: str  # .../v1
    simulator_key: str
    metrics_url: str = ""  # every service's /metrics (one endpoint per process); "" when off
    # What the gateway runs with, for tests that start a second replica of it.
    gateway_settings: GatewaySettings | None = None

    def key(self, user_id: str) -> str:
        return self.api_keys[user_id]


def _single_deployment(webhooks: bool) -> Callable[[str, str], ProviderSettings]:
    def settings(url: str, key: str) -> ProviderSettings:
        return ProviderSettings.single(
            url,
            key,
            webhooks=webhooks,
            webhook_poll_seconds=3600,
            timeout_seconds=10,
            min_poll_seconds=0.3,
            max_poll_seconds=1.0,
        )

    return settings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _database(infrastructure: Infrastructure, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex}"
    with psycopg.connect(infrastructure.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = infrastructure.database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(infrastructure.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def running_stack(
    infrastructure: Infrastructure,
    simulator: SimulatorSettings,
    *,
    provider_webhooks: bool = False,
    provider_settings: Callable[[str, str], ProviderSettings] | None = None,
    metrics: bool = False,
    storage_timeouts: S3Timeouts | None = None,
) -> AsyncIterator[Stack]:
    """Every service on its own loopback port against a fresh database and bucket. With
    `provider_webhooks`, the simulator reports finished videos to the gateway's intake;
    `provider_settings(simulator_url, simulator_key)` replaces the one-deployment registry. With
    `metrics`, the services serve /metrics on one free port (metric instruments are per process, so
    only one stack at a time should). `storage_timeouts` replaces the S3 clients' and the gateway's
    waits for media storage (tests that hang it want short ones)."""
    any_port = "127.0.0.1:0"
    metrics_port = _free_port() if metrics else 0
    provider_key = f"sk-{uuid.uuid4().hex}"
    webhook_secret = new_secret()
    gateway_port = _free_port()
    if provider_webhooks:
        simulator = replace(
            simulator,
            webhook_url=f"http://127.0.0.1:{gateway_port}/webhooks/providers/default",
            webhook_secret=webhook_secret,
            webhook_retry_base_seconds=0.2,
        )
    s3 = S3Settings(
        endpoint=infrastructure.s3_endpoint,
        access_key=infrastructure.s3_access_key,
        secret_key=infrastructure.s3_secret_key,
        region=infrastructure.s3_region,
        bucket=f"stack-{uuid.uuid4().hex[:20]}",
        timeouts=storage_timeouts or S3Timeouts(),
    )
    with _database(infrastructure, "stack") as db:
        for app_module in (moderation_app, billing_app, renderer_app, jobs_app, gateway_app):
            await asyncio.to_thread(upgrade_schema, db, app_module.MIGRATIONS, app_module.SCHEMA)
        async with AsyncExitStack() as exits:
            runner, simulator_port = await start_server(replace(simulator, port=0, api_key=provider_key))
            exits.push_async_callback(runner.cleanup)
            moderation = await exits.enter_async_context(
                moderation_app.serve(
                    ModerationSettings(
                        database_url=db, grpc_listen_address=any_port, metrics_port=metrics_port
                    )
                )
            )
            billing = await exits.enter_async_context(
                billing_app.serve(
                    BillingSettings(
                        database_url=db,
                        nats_url=infrastructure.nats_url,
                        grpc_listen_address=any_port,
                        metrics_port=metrics_port,
                    )
                )
            )
            renderer = await exits.enter_async_context(
                renderer_app.serve(
                    RendererSettings(
                        database_url=db, s3=s3, grpc_listen_address=any_port, metrics_port=metrics_port
                    )
                )
            )
            jobs = await exits.enter_async_context(
                jobs_app.serve(
                    JobsSettings(
                        database_url=db,
                        nats_url=infrastructure.nats_url,
                        s3=s3,
                        provider=(provider_settings or _single_deployment(provider_webhooks))(
                            f"http://127.0.0.1:{simulator_port}/v1",
                            provider_key,
                        ),
                        worker=WorkerSettings(
                            worker_id=f"test-{uuid.uuid4().hex[:8]}", idle_poll_seconds=0.2
                        ),
                        moderation_address=f"127.0.0.1:{moderation.port}",
                        billing_address=f"127.0.0.1:{billing.port}",
                        renderer_address=f"127.0.0.1:{renderer.port}",
                        grpc_listen_address=any_port,
                        metrics_port=metrics_port,
                    )
                )
            )
            gateway_settings = GatewaySettings(
                database_url=db,
                jobs_address=f"127.0.0.1:{jobs.port}",
                renderer_address=f"127.0.0.1:{renderer.port}",
                billing_address=f"127.0.0.1:{billing.port}",
                port=gateway_port,
                provider_webhook_secrets={"default": webhook_secret},
                metrics_port=metrics_port,
                nats_url=infrastructure.nats_url,
                storage_timeouts=s3.timeouts,
                # Receivers are on loopback; retries come quickly; stacks sharing the NATS server
                # each consume status events under their own durable name.
                client_webhooks=ClientWebhookSettings(
                    allow_private=True,
                    max_attempts=5,
                    timeout_seconds=5,
                    retry_base_seconds=0.2,
                    retry_max_seconds=1.0,
                    poll_seconds=0.2,
                    consumer=f"gateway-webhooks-{uuid.uuid4().hex[:12]}",
                ),
            )
            gateway = await exits.enter_async_context(gateway_app.serve(gateway_settings))
            engine = make_engine(db, pool_size=2)
            identity = IdentityStore(engine)
            keys = {}
            for user_id in ("user_alice", "user_bob", "user_broke", "user_admin"):
                keys[user_id] = f"vf_test_{uuid.uuid4().hex}"
                role = "admin" if user_id == "user_admin" else "user"
                await identity.ensure_user_with_key(
                    user_id=user_id, name=user_id, role=role, api_key=keys[user_id]
                )
            await engine.dispose()
            yield Stack(
                gateway_url=f"http://127.0.0.1:{gateway.port}",
                database_url=db,
                nats_url=infrastructure.nats_url,
                s3=s3,
                billing_address=f"127.0.0.1:{billing.port}",
                jobs_address=f"127.0.0.1:{jobs.port}",
                api_keys=keys,
                provider_webhook_secret=webhook_secret,
                simulator_url=f"http://127.0.0.1:{simulator_port}/v1",
                simulator_key=provider_key,
                metrics_url=f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "",
                gateway_settings=gateway_settings,
            )


@pytest.fixture(scope="session")
async def stack(infrastructure: Infrastructure, span_exporter: InMemorySpanExporter) -> AsyncIterator[Stack]:
    """The platform with a well-behaved provider simulator, shared by the end-to-end tests."""
    async with running_stack(
        infrastructure, SimulatorSettings(generation_seconds=1.5), metrics=True
    ) as running:
        yield running
