"""Wiring only: database engine, S3 client, use cases, the reference sweeper, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import imageio_ffmpeg
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcserver import RunningServer, create_server
from servicekit.metrics import listen_host, serve_metrics
from servicekit.storage import ensure_bucket, make_s3_client
from vidflow.render.v1 import render_service_pb2, render_service_pb2_grpc

from services.renderer.api import RenderApi
from services.renderer.config import Settings
from services.renderer.deletion import AssetDeleter
from services.renderer.delivery import AssetUrls
from services.renderer.domain.references import REFERENCE_TTL, REFERENCES_PREFIX, Limits
from services.renderer.domain.renditions import parse_ladder
from services.renderer.frames import FrameCapturer
from services.renderer.ingest import Ingestor
from services.renderer.media_store import MediaStore
from services.renderer.references import ReferencePreparer, ReferenceSweeper
from services.renderer.renditions import RenditionMaker
from services.renderer.store import SCHEMA, AssetStore, ReferenceStore, RenditionStore

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = render_service_pb2.DESCRIPTOR.services_by_name["RenderService"].full_name
REFERENCE_RULE_ID = "vidflow-expire-references"


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
        # Best effort: the sweeper below expires references whether or not the store takes this.
        await media.expire_prefix(f"{REFERENCES_PREFIX}/", days=REFERENCE_TTL.days, rule_id=REFERENCE_RULE_ID)
        assets = AssetStore(engine)
        references = ReferenceStore(engine)
        rendition_rows = RenditionStore(engine)
        sweeper = ReferenceSweeper(media, references)
        sweeping = asyncio.create_task(
            sweeper.run(settings.reference_sweep_seconds), name="reference-sweeper"
        )
        stack.push_async_callback(_cancel, sweeping)
        ffmpeg = settings.ffmpeg or imageio_ffmpeg.get_ffmpeg_exe()
        maker = RenditionMaker(
            media,
            rendition_rows,
            ffmpeg=ffmpeg,
            ladder=parse_ladder(settings.ladder),
            timeout_seconds=settings.transcode_timeout_seconds,
        )
        api = RenderApi(
            Ingestor(
                media,
                assets,
                maker,
                max_source_bytes=settings.max_source_bytes,
                ffmpeg=ffmpeg,
                stitch_timeout_seconds=settings.transcode_timeout_seconds,
            ),
            AssetUrls(media, assets, rendition_rows, ttl_seconds=settings.url_ttl_seconds),
            ReferencePreparer(
                media,
                references,
                Limits(max_bytes=settings.max_reference_bytes, max_pixels=settings.max_reference_pixels),
                max_concurrent_decodes=settings.reference_decodes,
            ),
            AssetDeleter(media, assets),
            FrameCapturer(media),
        )
        # servicekit's servers accept 64 MiB messages: five 10 MB uploads still reach our checks.
        running = await create_server(
            settings.grpc_listen_address,
            service_names=[SERVICE_NAME],
            register=lambda server: render_service_pb2_grpc.add_RenderServiceServicer_to_server(api, server),
            tracer_name="vidflow.renderer",
        )
        stack.push_async_callback(running.stop_gracefully, settings.grpc_drain_seconds)
        await stack.enter_async_context(
            serve_metrics(listen_host(settings.grpc_listen_address), settings.metrics_port)
        )
        yield running


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
