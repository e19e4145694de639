"""The worker rides out a database restart: a step whose outcome cannot be written while the database
is away is scheduled again as soon as it is back, instead of sitting out its whole lease.

Real parts: PostgreSQL (the test database stops taking connections and its sessions are cut, as in
a restart) and the provider simulator, whose chaos latency hook holds the worker's poll until the
database is gone, so the outage lands exactly between a step's provider call and its write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import pytest
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcclient import open_channel
from servicekit.storage import S3Settings, make_s3_client
from sqlalchemy import text

from devstack.servers import Infrastructure
from services.jobs.admission import Admission
from services.jobs.app import MIGRATIONS
from services.jobs.config import ProviderSettings, WorkerSettings
from services.jobs.domain.job import new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.peers import BillingClient, ModerationClient, RendererClient
from services.jobs.provider.openai_videos import OpenAIVideosProvider
from services.jobs.staging import StagingArea
from services.jobs.store import SCHEMA, Changes, JobStore
from services.jobs.worker import JobWorker
from simulator.app import start_server
from simulator.chaos import ChaosSettings
from simulator.config import Settings as SimulatorSettings
from tests.helpers import database_away, eventually

pytestmark = pytest.mark.integration

# Far longer than the test: only a retry the worker manages to record can free the job in time.
LEASE_SECONDS = 300
UNREACHABLE = "127.0.0.1:9"  # no peer is needed before the job reaches billing
SIMULATOR_KEY = "sk-test"


class HeldProvider:
    """The simulator's chaos-latency hook: each request waits at the gate, which opens on cue."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.arrived.set()
        await self.gate.wait()


@dataclass
class Rig:
    store: JobStore
    worker: JobWorker
    provider: HeldProvider
    provider_settings: ProviderSettings


@pytest.fixture
async def rig(fresh_database_url: str) -> AsyncIterator[Rig]:
    await asyncio.to_thread(upgrade_schema, fresh_database_url, MIGRATIONS, SCHEMA)
    held = HeldProvider()
    async with AsyncExitStack() as exits:
        engine = make_engine(fresh_database_url, pool_size=4)
        exits.push_async_callback(engine.dispose)
        runner, port = await start_server(
            SimulatorSettings(port=0, api_key=SIMULATOR_KEY, chaos=ChaosSettings(slow=1.0, slow_ms=1)),
            sleep=held.sleep,
        )
        exits.push_async_callback(runner.cleanup)
        exits.callback(held.gate.set)  # let a held request finish before the simulator stops
        http = await exits.enter_async_context(aiohttp.ClientSession())
        channel = open_channel(UNREACHABLE, tracer_name="test", default_timeout=2)
        exits.push_async_callback(channel.close)
        store = JobStore(engine)
        staging = StagingArea(
            make_s3_client(S3Settings(f"http://{UNREACHABLE}", "key", "secret", "us-east-1", "unused")),
            "unused",
        )
        billing, renderer = BillingClient(channel), RendererClient(channel)
        provider_settings = ProviderSettings.single(
            f"http://127.0.0.1:{port}/v1", SIMULATOR_KEY, min_poll_seconds=0.1, max_poll_seconds=0.2
        )
        worker = JobWorker(
            store=store,
            admission=Admission(
                store, ModerationClient(channel), billing, renderer, staging.read, lambda: None
            ),
            providers={
                "default": OpenAIVideosProvider(
                    base_url=f"http://127.0.0.1:{port}/v1",
                    api_key=SIMULATOR_KEY,
                    session=http,
                    timeout_seconds=30,
                    max_attempts=1,
                )
            },
            provider_settings=provider_settings,
            staging=staging,
            renderer=renderer,
            billing=billing,
            settings=WorkerSettings(
                worker_id="worker-under-test", idle_poll_seconds=0.1, lease_seconds=LEASE_SECONDS
            ),
        )
        yield Rig(store, worker, held, provider_settings)


async def test_a_step_whose_outcome_meets_a_database_outage_is_retried_once_it_is_back(
    rig: Rig, infrastructure: Infrastructure, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.jobs.worker")
    # A video the provider no longer has: the poll's answer fails the job (a write to the database).
    admitting = await rig.store.insert_admitting(
        job_id=new_job_id(),
        owner_id="user_a",
        spec=VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="720x1280"),
        request_id=None,
        traceparent="",
    )
    await rig.store.move(admitting, Stage.QUEUED, Changes(cost_credits=40))
    [submitting] = (await rig.store.dispatch(rig.provider_settings.registry)).started
    job = await rig.store.move(submitting, Stage.GENERATING, Changes(upstream_id="video_gone"))

    stop = asyncio.Event()
    running = asyncio.create_task(rig.worker.run(stop))
    try:
        await asyncio.wait_for(rig.provider.arrived.wait(), timeout=30)  # leased, and polling
        with database_away(infrastructure.database_url, fresh_database_url):
            rig.provider.gate.set()

            async def outcome_lost() -> bool | None:
                return True if "could not record a job step's outcome" in caplog.messages else None

            await eventually(outcome_lost, deadline_seconds=30)

        async def moved_on() -> bool | None:
            engine = make_engine(fresh_database_url, pool_size=1)
            try:
                async with engine.connect() as conn:
                    stage = await conn.scalar(
                        text("SELECT stage FROM jobs.jobs WHERE id = :id"), {"id": job.id}
                    )
            finally:
                await engine.dispose()
            return True if stage == Stage.RELEASING.value else None

        # Long before the lease would have expired, the job has moved on.
        await eventually(moved_on, deadline_seconds=30)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=LEASE_SECONDS / 4 + 10)
