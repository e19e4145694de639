"""What the jobs metrics are fed: the provider client's calls by operation and outcome (against a real
HTTP server), the store's committed stage changes, and the queue counts (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from servicekit.db import make_engine, upgrade_schema

from services.jobs.app import MIGRATIONS
from services.jobs.domain.job import Job, JobError, new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.routing import parse_registry
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.metrics import count_jobs
from services.jobs.provider import ProviderError
from services.jobs.provider.openai_videos import OpenAIVideosProvider
from services.jobs.store import SCHEMA, Changes, JobStore

SPEC = VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="720x1280")
SPEC_PRO = VideoSpec(model="sora-2-pro", prompt="a dog", seconds=4, size="720x1280")
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
REGISTRY = parse_registry(
    json.dumps(
        {
            "deployments": {
                "solo": {"base_url": "http://a.example/v1", "api_key_env": "A", "max_concurrent": 1}
            },
            "routes": {"sora-2": ["solo"], "sora-2-pro": ["solo"]},
        }
    )
)


class Provider:
    """Rate-limits the first create, answers retrieves, and holds `/videos/slow` until released."""

    def __init__(self) -> None:
        self.limited = False
        self.release = asyncio.Event()

    async def create(self, request: web.Request) -> web.Response:
        if not self.limited:
            self.limited = True
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"retry-after-ms": "1"}
            )
        return web.json_response({"id": "video_up", "status": "queued", "progress": 0})

    async def retrieve(self, request: web.Request) -> web.Response:
        if request.match_info["video_id"] == "slow":
            await self.release.wait()
        return web.json_response(
            {"id": request.match_info["video_id"], "status": "in_progress", "progress": 5}
        )


async def _nothing_claimed(upstream_id: str) -> bool:
    return False


async def test_every_provider_request_is_recorded_with_its_operation_and_outcome() -> None:
    provider = Provider()
    app = web.Application()
    app.router.add_post("/v1/videos", provider.create)
    app.router.add_get("/v1/videos/{video_id}", provider.retrieve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    calls: list[tuple[str, str]] = []
    seconds: list[float] = []

    def record(operation: str, outcome: str, elapsed: float) -> None:
        calls.append((operation, outcome))
        seconds.append(elapsed)

    def client(url: str, session: aiohttp.ClientSession, timeout: float = 5) -> OpenAIVideosProvider:
        return OpenAIVideosProvider(
            base_url=url,
            api_key="sk",
            session=session,
            timeout_seconds=timeout,
            max_attempts=2,
            record_call=record,
        )

    try:
        async with aiohttp.ClientSession() as session:
            await client(base_url, session).create(
                SPEC, model="sora-2", idempotency_key="job_1", not_before=LONG_AGO, claimed=_nothing_claimed
            )
            await client(base_url, session).retrieve("video_up")
            with pytest.raises(ProviderError):
                await client(base_url, session, timeout=0.2).retrieve("slow")
            provider.release.set()
            closed = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
            closed_port = closed.sockets[0].getsockname()[1]
            closed.close()
            await closed.wait_closed()
            with pytest.raises(ProviderError):
                await client(f"http://127.0.0.1:{closed_port}/v1", session).retrieve("video_up")
    finally:
        await runner.cleanup()

    assert calls == [
        ("create", "429"),
        ("create", "2xx"),
        ("retrieve", "2xx"),
        ("retrieve", "timeout"),
        ("retrieve", "timeout"),
        ("retrieve", "connection_error"),
        ("retrieve", "connection_error"),
    ]
    assert all(elapsed >= 0 for elapsed in seconds)


@pytest.fixture
async def engine(fresh_database_url):
    await asyncio.to_thread(upgrade_schema, fresh_database_url, MIGRATIONS, SCHEMA)
    engine = make_engine(fresh_database_url, pool_size=4)
    yield engine
    await engine.dispose()


async def _queued(store: JobStore, spec: VideoSpec = SPEC) -> Job:
    job = await store.insert_admitting(
        job_id=new_job_id(), owner_id="user_a", spec=spec, request_id=None, traceparent=""
    )
    return await store.move(job, Stage.QUEUED, Changes(cost_credits=40))


@pytest.mark.integration
async def test_the_store_reports_each_committed_stage_change_dispatch_included(engine) -> None:
    moves: list[tuple[Stage, Stage]] = []
    store = JobStore(engine, on_moved=lambda before, after: moves.append((before.stage, after.stage)))

    job = await _queued(store)
    [started] = (await store.dispatch(REGISTRY)).started
    await store.move(started, Stage.RELEASING, Changes(error=JobError("provider_error", "down")))

    assert moves == [
        (Stage.ADMITTING, Stage.QUEUED),
        (Stage.QUEUED, Stage.SUBMITTING),
        (Stage.SUBMITTING, Stage.RELEASING),
    ]
    assert started.id == job.id


@pytest.mark.integration
async def test_queue_counts_cover_unfinished_jobs_queue_depth_and_slots_in_use(engine) -> None:
    store = JobStore(engine)
    for spec in (SPEC, SPEC, SPEC, SPEC_PRO):
        await _queued(store, spec)
    [started] = (await store.dispatch(REGISTRY)).started  # one slot: the oldest sora-2 job starts
    refused = await store.insert_admitting(
        job_id=new_job_id(), owner_id="user_a", spec=SPEC, request_id=None, traceparent=""
    )
    await store.move(refused, Stage.FAILED, Changes(error=JobError("moderation_blocked", "no")))

    counts = await count_jobs(engine)

    assert counts.by_stage == {"queued": 3, "submitting": 1}  # the failed job is finished, not counted
    assert counts.queued_by_model == {"sora-2": 2, "sora-2-pro": 1}
    assert counts.in_flight_by_deployment == {started.deployment: 1}
