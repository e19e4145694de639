"""Wiring only: database engine, rule engine, optional classifier session, gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcserver import RunningServer, create_server
from servicekit.metrics import listen_host, serve_metrics
from vidflow.moderation.v1 import moderation_service_pb2, moderation_service_pb2_grpc

from services.moderation.api import ModerationApi
from services.moderation.classifier import OpenAIModerationClassifier
from services.moderation.config import Settings
from services.moderation.domain import Blocklist, Classifier, Moderator, RuleEngine
from services.moderation.store import SCHEMA, DecisionStore

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = moderation_service_pb2.DESCRIPTOR.services_by_name["ModerationService"].full_name


def migrate(settings: Settings) -> None:
    upgrade_schema(settings.database_url, MIGRATIONS, SCHEMA)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningServer]:
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database_url, pool_size=5)
        stack.push_async_callback(engine.dispose)
        classifier: Classifier | None = None
        if settings.classifier is not None:
            session = aiohttp.ClientSession()
            stack.push_async_callback(session.close)
            classifier = OpenAIModerationClassifier(settings.classifier, session)
        moderator = Moderator(
            RuleEngine(settings.categories),
            Blocklist.of(settings.image_blocklist, settings.image_hash_distance),
            classifier,
        )
        api = ModerationApi(moderator, DecisionStore(engine))
        running = await create_server(
            settings.grpc_listen_address,
            service_names=[SERVICE_NAME],
            register=lambda server: moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(
                api, server
            ),
            tracer_name="vidflow.moderation",
        )
        stack.push_async_callback(running.stop_gracefully, settings.grpc_drain_seconds)
        await stack.enter_async_context(
            serve_metrics(listen_host(settings.grpc_listen_address), settings.metrics_port)
        )
        yield running
