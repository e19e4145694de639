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

import pytest
from servicekit.db import make_engine
from sqlalchemy import text

from devstack.servers import Infrastructure
from services.jobs.config import WorkerSettings
from services.jobs.domain.lifecycle import Stage
from simulator.chaos import ChaosSettings
from simulator.config import Settings as SimulatorSettings
from tests.helpers import database_away, eventually

from .worker_rig import SIMULATOR_KEY, Rig, worker_rig

pytestmark = pytest.mark.integration

# Far longer than the test: only a retry the worker manages to record can free the job in time.
LEASE_SECONDS = 300


class HeldProvider:
    """The simulator's chaos-latency hook: each request waits at the gate, which opens on cue."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.arrived.set()
        await self.gate.wait()


@pytest.fixture
def held() -> HeldProvider:
    return HeldProvider()


@pytest.fixture
async def rig(fresh_database_url: str, held: HeldProvider) -> AsyncIterator[Rig]:
    simulator = SimulatorSettings(port=0, api_key=SIMULATOR_KEY, chaos=ChaosSettings(slow=1.0, slow_ms=1))
    worker = WorkerSettings(worker_id="worker-under-test", idle_poll_seconds=0.1, lease_seconds=LEASE_SECONDS)
    async with worker_rig(fresh_database_url, simulator, worker, sleep=held.sleep) as rig:
        try:
            yield rig
        finally:
            held.gate.set()  # let a held request finish before the simulator stops


async def test_a_step_whose_outcome_meets_a_database_outage_is_retried_once_it_is_back(
    rig: Rig,
    held: HeldProvider,
    infrastructure: Infrastructure,
    fresh_database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.jobs.worker")
    # A video the provider no longer has: the poll's answer fails the job (a write to the database).
    job = await rig.generating_job(upstream_id="video_gone")

    stop = asyncio.Event()
    running = asyncio.create_task(rig.worker.run(stop))
    try:
        await asyncio.wait_for(held.arrived.wait(), timeout=30)  # leased, and polling
        with database_away(infrastructure.database_url, fresh_database_url):
            held.gate.set()

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
