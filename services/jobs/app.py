"""Wiring only: database, bus, storage, peers, provider, gRPC server, worker and outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
from servicekit.bus import nats_connection
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcclient import open_channel
from servicekit.grpcserver import RunningServer, create_server
from servicekit.metrics import listen_host, serve_metrics
from servicekit.outbox import OutboxRelay
from servicekit.storage import ensure_bucket, make_s3_client
from vidflow.jobs.v1 import jobs_service_pb2, jobs_service_pb2_grpc

from services.jobs.admission import Admission
from services.jobs.api import JobsApi
from services.jobs.budget import RequestBudget
from services.jobs.cancellation import Cancellation
from services.jobs.config import Settings
from services.jobs.deletion import Deletion
from services.jobs.intake import ProviderEventIntake
from services.jobs.metrics import QueueGauges, observe_move, provider_call_recorder
from services.jobs.peers import BillingClient, ModerationClient, RendererClient
from services.jobs.provider.openai_videos import OpenAIVideosProvider
from services.jobs.retries import Retries
from services.jobs.staging import StagingArea
from services.jobs.staging_sweeper import StagingSweeper
from services.jobs.store import SCHEMA, JobStore, outbox
from services.jobs.worker import JobWorker

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = jobs_service_pb2.DESCRIPTOR.services_by_name["JobsService"].full_name
TRACER = "vidflow.jobs"


def migrate(settings: Settings) -> None:
    upgrade_schema(settings.database_url, MIGRATIONS, SCHEMA)


@dataclass
class RunningJobs:
    server: RunningServer
    store: JobStore

    @property
    def port(self) -> int:
        return self.server.port


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningJobs]:
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        # Start-up does not wait for NATS: events wait in the outbox until the relay reaches it.
        nats = await stack.enter_async_context(nats_connection(settings.nats_url, name="vidflow-jobs"))
        js = nats.jetstream()
        s3 = make_s3_client(settings.s3)
        await ensure_bucket(s3, settings.s3.bucket)
        http = aiohttp.ClientSession()
        stack.push_async_callback(http.close)

        channels = [
            open_channel(address, tracer_name=TRACER)
            for address in (settings.moderation_address, settings.billing_address, settings.renderer_address)
        ]
        for channel in channels:
            stack.push_async_callback(channel.close)
        moderation, billing, renderer = (
            ModerationClient(channels[0]),
            BillingClient(channels[1]),
            RendererClient(channels[2]),
        )

        relay = OutboxRelay(engine, outbox, js, stream=settings.jobs_stream)
        store = JobStore(engine, on_event_written=relay.wake, on_moved=observe_move)
        worker_wake: list[JobWorker] = []

        def on_admitted() -> None:
            for worker in worker_wake:
                worker.wake()

        staging = StagingArea(s3, settings.s3.bucket)
        admission = Admission(store, moderation, billing, renderer, staging.read, on_admitted)
        providers = {
            name: OpenAIVideosProvider(
                base_url=deployment.base_url,
                api_key=settings.provider.api_keys[name],
                session=http,
                timeout_seconds=settings.provider.timeout_seconds,
                max_attempts=settings.provider.max_attempts,
                acquire_budget=RequestBudget(engine, deployment).acquire,
                record_call=provider_call_recorder(name),
            )
            for name, deployment in settings.provider.registry.deployments.items()
        }
        worker = JobWorker(
            store=store,
            admission=admission,
            providers=providers,
            provider_settings=settings.provider,
            staging=staging,
            renderer=renderer,
            billing=billing,
            settings=settings.worker,
        )
        worker_wake.append(worker)

        stop = asyncio.Event()
        sweeper = StagingSweeper(
            store,
            staging,
            retention=timedelta(seconds=settings.worker.staging_retention_seconds),
            interval_seconds=settings.worker.staging_sweep_seconds,
        )
        tasks = [
            asyncio.create_task(relay.run(stop), name="outbox-relay"),
            asyncio.create_task(worker.run(stop), name="job-worker"),
            asyncio.create_task(sweeper.run(stop), name="staging-sweeper"),
        ]

        async def stop_background() -> None:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        # Registered before the server so it runs after the gRPC drain: in-flight RPCs finish first.
        stack.push_async_callback(stop_background)
        intake = ProviderEventIntake(store, on_applied=worker.wake)
        cancellation = Cancellation(store, on_cancelled=worker.wake)
        api = JobsApi(
            admission,
            store,
            intake,
            settings.provider.registry,
            cancellation,
            Deletion(store, renderer, staging),
            Retries(store, admission, staging),
        )
        running = await create_server(
            settings.grpc_listen_address,
            service_names=[SERVICE_NAME],
            register=lambda server: jobs_service_pb2_grpc.add_JobsServiceServicer_to_server(api, server),
            tracer_name=TRACER,
        )
        stack.push_async_callback(running.stop_gracefully, settings.grpc_drain_seconds)
        gauges = QueueGauges(engine, settings.provider.registry)
        stack.enter_context(gauges.observed())
        metrics_host = listen_host(settings.grpc_listen_address)
        await stack.enter_async_context(
            serve_metrics(metrics_host, settings.metrics_port, refresh=[gauges.refresh])
        )
        yield RunningJobs(running, store)
