"""Wiring only: database engine, S3 client, use cases, gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcserver import RunningServer, create_server
from servicekit.storage import ensure_bucket, make_s3_client
from vidflow.render.v1 import render_service_pb2, render_service_pb2_grpc

from services.renderer.api import RenderApi
from services.renderer.config import Settings
from services.renderer.delivery import AssetUrls
from services.renderer.ingest import Ingestor
from services.renderer.media_store import MediaStore
from services.renderer.store import SCHEMA, AssetStore

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = render_service_pb2.DESCRIPTOR.services_by_name["RenderService"].full_name


def migrate(settings: Settings) -> None:
    upgrade_schema(settings.database_url, MIGRATIONS, SCHEMA)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningServer]:
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database_url, pool_size=5)
        stack.push_async_callback(engine.dispose)
        s3 = make_s3_client(settings.s3)
        await ensure_bucket(s3, settings.s3.bucket)
        media = MediaStore(s3, settings.s3.bucket)
        assets = AssetStore(engine)
        api = RenderApi(
            Ingestor(media, assets, max_source_bytes=settings.max_source_bytes),
            AssetUrls(media, assets, ttl_seconds=settings.url_ttl_seconds),
        )
        running = await create_server(
            settings.grpc_listen_address,
            service_names=[SERVICE_NAME],
            register=lambda server: render_service_pb2_grpc.add_RenderServiceServicer_to_server(api, server),
            tracer_name="vidflow.renderer",
        )
        stack.push_async_callback(running.stop_gracefully, settings.grpc_drain_seconds)
        yield running
