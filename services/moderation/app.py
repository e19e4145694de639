"""Wiring only: database engine, rule engine, gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcserver import RunningServer, create_server
from vidflow.moderation.v1 import moderation_service_pb2, moderation_service_pb2_grpc

from services.moderation.api import ModerationApi
from services.moderation.config import Settings
from services.moderation.domain import DEFAULT_CATEGORIES, RuleEngine
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
        api = ModerationApi(RuleEngine(DEFAULT_CATEGORIES), DecisionStore(engine))
        running = await create_server(
            settings.grpc_listen_address,
            service_names=[SERVICE_NAME],
            register=lambda server: moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(
                api, server
            ),
            tracer_name="vidflow.moderation",
        )
        stack.push_async_callback(running.stop_gracefully, settings.grpc_drain_seconds)
        yield running
