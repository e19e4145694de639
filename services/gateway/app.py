"""Wiring only: the aiohttp application factory, its resources, and the HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcclient import open_channel
from servicekit.telemetry import context_from_headers
from vidflow.billing.v1 import billing_service_pb2_grpc
from vidflow.jobs.v1 import jobs_service_pb2_grpc
from vidflow.render.v1 import render_service_pb2_grpc

from services.gateway.auth import auth_middleware
from services.gateway.billing import routes as billing_routes
from services.gateway.config import Settings
from services.gateway.http_errors import Handler, errors_middleware
from services.gateway.identity import DEV_USER_ID, SCHEMA, IdentityStore
from services.gateway.keys import (
    BILLING_STUB,
    HTTP_CLIENT,
    IDENTITY,
    JOBS_STUB,
    PROVIDER_WEBHOOK_SECRETS,
    RENDER_STUB,
)
from services.gateway.provider_webhooks import routes as provider_webhook_routes
from services.gateway.videos import routes as video_routes

MIGRATIONS = Path(__file__).with_name("migrations")
TRACER = "vidflow.gateway"
SETTINGS = web.AppKey("settings", Settings)
HEALTH_STUB = web.AppKey("jobs_health", health_pb2_grpc.HealthStub)
tracer = trace.get_tracer(TRACER)
# aiohttp's default (8190) answers a longer header itself, with a body that quotes the header's
# start, an API key included; this lets long keys reach auth_middleware and get a clean 401.
MAX_HEADER_FIELD_BYTES = 32 * 1024


def migrate(settings: Settings) -> None:
    upgrade_schema(settings.database_url, MIGRATIONS, SCHEMA)


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
    parent = context_from_headers(request.headers)
    with tracer.start_as_current_span(
        f"{request.method} {route}", context=parent, kind=trace.SpanKind.SERVER
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


def make_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware, tracing_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[PROVIDER_WEBHOOK_SECRETS] = dict(settings.provider_webhook_secrets)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_grpc_peers)
    app.cleanup_ctx.append(_http_client)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_routes(video_routes)
    app.router.add_routes(provider_webhook_routes)
    app.router.add_routes(billing_routes)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = make_engine(settings.database_url, pool_size=10)
    identity = IdentityStore(engine)
    if settings.dev_api_key:
        await identity.ensure_user_with_key(
            user_id=DEV_USER_ID, name="Developer", role="admin", api_key=settings.dev_api_key
        )
    app[IDENTITY] = identity
    yield
    await engine.dispose()


async def _grpc_peers(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    jobs_channel = open_channel(settings.jobs_address, tracer_name=TRACER)
    render_channel = open_channel(settings.renderer_address, tracer_name=TRACER)
    billing_channel = open_channel(settings.billing_address, tracer_name=TRACER)
    app[JOBS_STUB] = jobs_service_pb2_grpc.JobsServiceStub(jobs_channel)
    app[BILLING_STUB] = billing_service_pb2_grpc.BillingServiceStub(billing_channel)
    app[RENDER_STUB] = render_service_pb2_grpc.RenderServiceStub(render_channel)
    app[HEALTH_STUB] = health_pb2_grpc.HealthStub(jobs_channel)
    yield
    await jobs_channel.close()
    await render_channel.close()
    await billing_channel.close()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    app[HTTP_CLIENT] = aiohttp.ClientSession()
    yield
    await app[HTTP_CLIENT].close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers and the jobs service reports SERVING."""
    problems: list[str] = []
    try:
        await request.app[IDENTITY].ping()
    except Exception:
        problems.append("database")
    try:
        answer = await request.app[HEALTH_STUB].Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            problems.append("jobs")
    except Exception:
        problems.append("jobs")
    if problems:
        return web.json_response({"status": "unavailable", "failing": problems}, status=503)
    return web.json_response({"status": "ready"})


@dataclass
class RunningGateway:
    port: int
    app: web.Application


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningGateway]:
    app = make_app(settings)
    runner = web.AppRunner(
        app,
        shutdown_timeout=settings.shutdown_seconds,
        access_log=None,
        max_field_size=MAX_HEADER_FIELD_BYTES,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        yield RunningGateway(runner.addresses[0][1], app)
    finally:
        await runner.cleanup()
