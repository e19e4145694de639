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
from servicekit.metrics import serve_metrics
from servicekit.telemetry import context_from_headers
from vidflow.billing.v1 import billing_service_pb2_grpc
from vidflow.jobs.v1 import jobs_service_pb2_grpc
from vidflow.render.v1 import render_service_pb2_grpc

from services.gateway.api_keys import routes as api_key_routes
from services.gateway.auth import auth_middleware, rate_limit_headers, rate_limit_middleware
from services.gateway.batch_store import BatchStore
from services.gateway.batches import routes as batch_routes
from services.gateway.billing import routes as billing_routes
from services.gateway.body_limit import BodyTimeouts, body_limit_middleware
from services.gateway.config import Settings
from services.gateway.cors import cors_headers, cors_middleware
from services.gateway.docs_routes import add_docs_routes
from services.gateway.http_errors import Handler, errors_middleware, request_id_header
from services.gateway.http_server import GatewayRunner
from services.gateway.identity import DEV_USER_ID, SCHEMA, IdentityStore
from services.gateway.jwt_tokens import JwtVerifier
from services.gateway.keys import (
    BATCH_STORE,
    BILLING_STUB,
    CLIENT_WEBHOOK_SETTINGS,
    HTTP_CLIENT,
    IDENTITY,
    JOBS_STUB,
    JWT_VERIFIER,
    PROVIDER_WEBHOOK_SECRETS,
    RATE_LIMITER,
    RENDER_STUB,
    STORAGE_TIMEOUT,
    WEBHOOK_STORE,
)
from services.gateway.live import close_live_clients, live_events
from services.gateway.live import routes as live_routes
from services.gateway.metrics_middleware import metrics_middleware
from services.gateway.provider_webhooks import routes as provider_webhook_routes
from services.gateway.rate_limits import RequestLimiter
from services.gateway.videos import routes as video_routes
from services.gateway.webapp_routes import add_webapp_routes
from services.gateway.webhook_delivery import client_webhooks
from services.gateway.webhook_endpoints import routes as webhook_endpoint_routes
from services.gateway.webhook_store import WebhookStore

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
        middlewares=[
            metrics_middleware,
            errors_middleware,
            tracing_middleware,
            cors_middleware(settings.cors),  # preflights need no key
            # Before a key is looked up.
            body_limit_middleware(
                settings.max_body_bytes,
                BodyTimeouts(settings.body_idle_seconds, settings.body_deadline_seconds),
            ),
            auth_middleware,
            rate_limit_middleware,
        ],
        client_max_size=settings.max_body_bytes,
    )
    # Headers every answer carries, streamed ones included (those are prepared inside the handler).
    app.on_response_prepare.append(request_id_header)
    app.on_response_prepare.append(rate_limit_headers)
    app.on_response_prepare.append(cors_headers(settings.cors))
    app[SETTINGS] = settings
    app[PROVIDER_WEBHOOK_SECRETS] = dict(settings.provider_webhook_secrets)
    app[CLIENT_WEBHOOK_SETTINGS] = settings.client_webhooks
    # Per socket read, not for the whole answer: a long download keeps streaming.
    app[STORAGE_TIMEOUT] = aiohttp.ClientTimeout(
        total=None,
        sock_connect=settings.storage_timeouts.connect_seconds,
        sock_read=settings.storage_timeouts.read_seconds,
    )
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_grpc_peers)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(live_events(settings))
    app.cleanup_ctx.append(client_webhooks(settings))
    app.on_shutdown.append(close_live_clients)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_docs_routes(app)
    app.router.add_routes(video_routes)
    app.router.add_routes(provider_webhook_routes)
    app.router.add_routes(billing_routes)
    app.router.add_routes(api_key_routes)
    app.router.add_routes(live_routes)
    app.router.add_routes(batch_routes)
    app.router.add_routes(webhook_endpoint_routes)
    add_webapp_routes(app)
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
    app[RATE_LIMITER] = RequestLimiter(engine, settings.default_requests_per_minute)
    app[BATCH_STORE] = BatchStore(engine)
    app[WEBHOOK_STORE] = WebhookStore(engine)
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
    if (jwt_settings := app[SETTINGS].jwt) is not None:
        app[JWT_VERIFIER] = JwtVerifier(jwt_settings, app[HTTP_CLIENT])
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
    runner = GatewayRunner(
        app,
        shutdown_timeout=settings.shutdown_seconds,
        access_log=None,
        max_field_size=MAX_HEADER_FIELD_BYTES,
        # aiohttp's keep-alive timer also bounds the wait for a request's headers (its default is
        # an hour, which lets slow-header clients hold connections that long).
        keepalive_timeout=settings.idle_timeout_seconds,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        async with serve_metrics(settings.host, settings.metrics_port):
            yield RunningGateway(runner.addresses[0][1], app)
    finally:
        await runner.cleanup()
