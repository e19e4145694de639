"""A step that keeps failing transiently waits for as long as its patience, then fails the video:
measured in time waited, so an outage of a few minutes is ridden out and a lasting one still ends.

Real parts: PostgreSQL and the provider simulator, whose chaos answers every request 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.jobs.config import WorkerSettings
from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage, keeps_retrying
from simulator.chaos import ChaosSettings
from simulator.config import Settings as SimulatorSettings
from tests.helpers import eventually

from .worker_rig import SIMULATOR_KEY, Rig, worker_rig

pytestmark = pytest.mark.integration

PROVIDER_DOWN = SimulatorSettings(port=0, api_key=SIMULATOR_KEY, chaos=ChaosSettings(unavailable=1.0))
# 1 s, then 2 s of backoff: patience of 2.5 s is spent at the third failure.
SHORT_PATIENCE_SECONDS = 2.5


@pytest.fixture
async def running(request: pytest.FixtureRequest, fresh_database_url: str) -> AsyncIterator[Rig]:
    settings = WorkerSettings(
        worker_id="patient", idle_poll_seconds=0.1, step_retry_patience_seconds=request.param
    )
    async with worker_rig(fresh_database_url, PROVIDER_DOWN, settings) as rig:
        stop = asyncio.Event()
        task = asyncio.create_task(rig.worker.run(stop))
        try:
            yield rig
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=60)


@pytest.mark.parametrize("running", [SHORT_PATIENCE_SECONDS], indirect=True)
async def test_a_provider_down_for_longer_than_the_patience_fails_the_video(running: Rig) -> None:
    job = await running.generating_job(upstream_id="video_1")

    async def released() -> Job | None:
        current = await running.store.get(job.id)
        return current if current is not None and current.stage is Stage.RELEASING else None

    failed = await eventually(released, deadline_seconds=60)
    assert failed.error is not None and failed.error.code == "provider_unavailable"
    tries = next(n for n in range(1, 100) if not keeps_retrying(n, SHORT_PATIENCE_SECONDS))
    assert tries == 3
    assert failed.error.message.startswith(f"Gave up after {tries} attempts")


@pytest.mark.parametrize("running", [1800.0], indirect=True)
async def test_a_provider_outage_within_the_patience_is_waited_out(running: Rig) -> None:
    job = await running.generating_job(upstream_id="video_1")

    async def failed_several_times() -> Job | None:
        current = await running.store.get(job.id)
        # More failures than the short patience allows, and still waiting for the provider.
        return current if current is not None and current.attempts >= 4 else None

    waiting = await eventually(failed_several_times, deadline_seconds=90)
    assert waiting.stage is Stage.GENERATING
    assert waiting.error is None
