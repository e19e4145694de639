"""JobStore against real PostgreSQL: leases that keep replicas apart, and events written with moves."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from servicekit.db import make_engine, upgrade_schema
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.jobs.app import MIGRATIONS
from services.jobs.domain.job import new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.store import SCHEMA, Changes, JobStore, StaleJob

pytestmark = pytest.mark.integration
SPEC = VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="720x1280")


@pytest.fixture
async def store(fresh_database_url):
    await asyncio.to_thread(upgrade_schema, fresh_database_url, MIGRATIONS, SCHEMA)
    engine = make_engine(fresh_database_url, pool_size=4)
    yield JobStore(engine)
    await engine.dispose()


async def _queued_job(store: JobStore, owner: str = "user_a"):
    job = await store.insert_admitting(
        job_id=new_job_id(), owner_id=owner, spec=SPEC, request_id=None, traceparent=""
    )
    return await store.move(job, Stage.QUEUED, Changes(cost_credits=40))


async def test_two_replicas_never_lease_the_same_job(store):
    created = {(await _queued_job(store)).id for _ in range(30)}
    first, second = await asyncio.gather(
        store.lease_due(worker_id="replica-a", limit=30, lease_seconds=60, admission_grace_seconds=60),
        store.lease_due(worker_id="replica-b", limit=30, lease_seconds=60, admission_grace_seconds=60),
    )
    a_ids, b_ids = {job.id for job in first}, {job.id for job in second}
    assert a_ids.isdisjoint(b_ids)
    assert a_ids | b_ids == created
    # Leased jobs are not handed out again while the lease holds.
    assert (
        await store.lease_due(worker_id="replica-c", limit=30, lease_seconds=60, admission_grace_seconds=60)
        == []
    )


async def test_an_expired_lease_hands_the_job_to_another_worker(store):
    job = await _queued_job(store)
    # A zero-second lease is already over by the next transaction, as if the worker had died.
    [leased] = await store.lease_due(
        worker_id="crashed", limit=1, lease_seconds=0, admission_grace_seconds=60
    )
    assert leased.id == job.id
    taken_over = await store.lease_due(
        worker_id="survivor", limit=1, lease_seconds=60, admission_grace_seconds=60
    )
    assert [j.id for j in taken_over] == [job.id]


async def test_a_stale_view_cannot_move_a_job(store):
    job = await _queued_job(store)
    await store.move(job, Stage.SUBMITTING)
    with pytest.raises(StaleJob):
        await store.move(job, Stage.SUBMITTING)  # same move from the old view: someone got there first


async def test_each_move_writes_one_event_with_the_next_sequence(store):
    job = await _queued_job(store)
    job = await store.move(job, Stage.SUBMITTING)
    job = await store.move(job, Stage.GENERATING, Changes(upstream_id="up_1", progress=0))
    job = await store.record_progress(job, 40, next_poll_in=1)
    job = await store.record_progress(job, 40, next_poll_in=1)  # unchanged: no event
    events = [events_pb2.VideoStatusChangedEvent.FromString(p) for p in await store.events_for(job.id)]
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert [e.job.stage for e in events] == [
        jobs_pb2.JOB_STAGE_QUEUED,
        jobs_pb2.JOB_STAGE_SUBMITTING,
        jobs_pb2.JOB_STAGE_GENERATING,
        jobs_pb2.JOB_STAGE_GENERATING,
    ]
    assert events[-1].job.progress == 40
    assert all(e.job.id == job.id for e in events)


async def test_listing_is_scoped_to_the_owner_and_pages_by_cursor(store):
    mine = [(await _queued_job(store, "owner_1")).id for _ in range(5)]
    await _queued_job(store, "owner_2")
    page, more = await store.list_for_owner("owner_1", limit=3, after_id=None, descending=False)
    assert [j.id for j in page] == mine[:3] and more
    rest, more = await store.list_for_owner("owner_1", limit=3, after_id=page[-1].id, descending=False)
    assert [j.id for j in rest] == mine[3:] and not more
    newest_first, _ = await store.list_for_owner("owner_1", limit=10, after_id=None, descending=True)
    assert [j.id for j in newest_first] == mine[::-1]
    # Another owner's job id as a cursor reveals nothing.
    other = (await _queued_job(store, "owner_2")).id
    assert await store.list_for_owner("owner_1", limit=3, after_id=other, descending=False) == ([], False)


async def test_the_same_request_id_cannot_create_two_jobs(store):
    from services.jobs.store import DuplicateRequest

    key = uuid.uuid4().hex
    await store.insert_admitting(job_id=new_job_id(), owner_id="o", spec=SPEC, request_id=key, traceparent="")
    with pytest.raises(DuplicateRequest):
        await store.insert_admitting(
            job_id=new_job_id(), owner_id="o", spec=SPEC, request_id=key, traceparent=""
        )
    # A different owner may use the same key.
    await store.insert_admitting(job_id=new_job_id(), owner_id="p", spec=SPEC, request_id=key, traceparent="")
