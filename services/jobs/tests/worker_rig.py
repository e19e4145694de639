"""A jobs worker against real PostgreSQL and the provider simulator, with every gRPC peer and S3
unreachable: enough for the steps that talk only to the provider and the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcclient import open_channel
from servicekit.storage import S3Settings, make_s3_client

from services.jobs.admission import Admission
from services.jobs.app import MIGRATIONS
from services.jobs.config import ProviderSettings, WorkerSettings
from services.jobs.domain.job import Job, new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.peers import BillingClient, ModerationClient, RendererClient
from services.jobs.provider.openai_videos import OpenAIVideosProvider
from services.jobs.staging import StagingArea
from services.jobs.store import SCHEMA, Changes, JobStore
from services.jobs.worker import JobWorker
from simulator.app import start_server
from simulator.config import Settings as SimulatorSettings

UNREACHABLE = "127.0.0.1:9"
SIMULATOR_KEY = "sk-test"


@dataclass
class Rig:
    store: JobStore
    worker: JobWorker
    provider_settings: ProviderSettings

    async def generating_job(self, upstream_id: str) -> Job:
        """A job the provider is (said to be) making, as the worker would find it."""
        admitting = await self.store.insert_admitting(
            job_id=new_job_id(),
            owner_id="user_a",
            spec=VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="720x1280"),
            request_id=None,
            traceparent="",
        )
        await self.store.move(admitting, Stage.QUEUED, Changes(cost_credits=40))
        [submitting] = (await self.store.dispatch(self.provider_settings.registry)).started
        return await self.store.move(submitting, Stage.GENERATING, Changes(upstream_id=upstream_id))


@asynccontextmanager
async def worker_rig(
    database_url: str,
    simulator: SimulatorSettings,
    worker: WorkerSettings,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[Rig]:
    await asyncio.to_thread(upgrade_schema, database_url, MIGRATIONS, SCHEMA)
    async with AsyncExitStack() as exits:
        engine = make_engine(database_url, pool_size=4)
        exits.push_async_callback(engine.dispose)
        runner, port = await start_server(simulator, sleep=sleep)
        exits.push_async_callback(runner.cleanup)
        http = await exits.enter_async_context(aiohttp.ClientSession())
        channel = open_channel(UNREACHABLE, tracer_name="test", default_timeout=2)
        exits.push_async_callback(channel.close)
        store = JobStore(engine)
        staging = StagingArea(
            make_s3_client(S3Settings(f"http://{UNREACHABLE}", "key", "secret", "us-east-1", "unused")),
            "unused",
        )
        billing, renderer = BillingClient(channel), RendererClient(channel)
        base_url = f"http://127.0.0.1:{port}/v1"
        provider_settings = ProviderSettings.single(
            base_url, SIMULATOR_KEY, min_poll_seconds=0.1, max_poll_seconds=0.2
        )
        job_worker = JobWorker(
            store=store,
            admission=Admission(
                store, ModerationClient(channel), billing, renderer, staging.read, lambda: None
            ),
            providers={
                "default": OpenAIVideosProvider(
                    base_url=base_url, api_key=SIMULATOR_KEY, session=http, timeout_seconds=30, max_attempts=1
                )
            },
            provider_settings=provider_settings,
            staging=staging,
            renderer=renderer,
            billing=billing,
            settings=worker,
        )
        yield Rig(store, job_worker, provider_settings)
