"""JobStore against real PostgreSQL: leases that keep replicas apart, and events written with moves."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from servicekit.db import make_engine, upgrade_schema
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.jobs.app import MIGRATIONS
from services.jobs.budget import RequestBudget, burst_size, refill_per_second
from services.jobs.domain.job import new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.routing import Deployment, parse_registry
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.store import SCHEMA, Changes, JobStore, StaleJob

pytestmark = pytest.mark.integration
SPEC = VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="720x1280")
SPEC_PRO = VideoSpec(model="sora-2-pro", prompt="a dog", seconds=4, size="720x1280")


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


async def _started_job(store: JobStore, owner: str = "user_a"):
    return await store.move(await _queued_job(store, owner), Stage.SUBMITTING)


async def test_two_replicas_never_lease_the_same_job(store):
    created = {(await _started_job(store)).id for _ in range(30)}
    first, second = await asyncio.gather(
        store.lease_due(worker_id="replica-a", limit=30, lease_seconds=60, admission_grace_seconds=60),
        store.lease_due(worker_id="replica-b", limit=30, lease_seconds=60, admission_grace_seconds=60),
    )
    a_ids, b_ids = {job.id for job in first}, {job.id for job in second}
    assert a_ids.isdisjoint(b_ids)
    assert a_ids | b_ids == created
    # Leased jobs are not handed out again while the lease holds; queued ones wait for the dispatcher.
    await _queued_job(store)
    assert (
        await store.lease_due(worker_id="replica-c", limit=30, lease_seconds=60, admission_grace_seconds=60)
        == []
    )


async def test_an_expired_lease_hands_the_job_to_another_worker(store):
    job = await _started_job(store)
    # A zero-second lease is already over by the next transaction, as if the worker had died.
    [leased] = await store.lease_due(
        worker_id="crashed", limit=1, lease_seconds=0, admission_grace_seconds=60
    )
    assert leased.id == job.id
    taken_over = await store.lease_due(
        worker_id="survivor", limit=1, lease_seconds=60, admission_grace_seconds=60
    )
    assert [j.id for j in taken_over] == [job.id]


async def test_only_the_lease_holder_can_put_off_a_step(store):
    job = await _started_job(store)
    [lapsed] = await store.lease_due(worker_id="slow", limit=1, lease_seconds=0, admission_grace_seconds=60)
    [current] = await store.lease_due(
        worker_id="survivor", limit=1, lease_seconds=60, admission_grace_seconds=60
    )
    assert lapsed.id == current.id == job.id

    # The worker whose lease ran out cannot push back, or unlease, the step the survivor is running.
    with pytest.raises(StaleJob):
        await store.retry_later(lapsed, 60, lease_owner="slow")
    assert (
        await store.lease_due(worker_id="third", limit=1, lease_seconds=60, admission_grace_seconds=60) == []
    )
    unchanged = await store.get(job.id)
    assert unchanged is not None and unchanged.attempts == 0

    # Nor can a retry from an older stage touch the job once it moved on.
    moved = await store.move(current, Stage.GENERATING, Changes(upstream_id="video_1"))
    with pytest.raises(StaleJob):
        await store.retry_later(current, 60, lease_owner="survivor")
    assert (await store.get(job.id)).attempts == moved.attempts == 0


async def test_the_lease_holder_puts_off_a_step_and_frees_it(store):
    job = await _started_job(store)
    [leased] = await store.lease_due(worker_id="w", limit=1, lease_seconds=60, admission_grace_seconds=60)
    await store.retry_later(leased, 0, lease_owner="w")
    [again] = await store.lease_due(worker_id="other", limit=1, lease_seconds=60, admission_grace_seconds=60)
    assert again.id == job.id and again.attempts == 1


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


REGISTRY = parse_registry(
    json.dumps(
        {
            "deployments": {
                "primary": {"base_url": "http://a.example/v1", "api_key_env": "A", "max_concurrent": 2},
                "overflow": {"base_url": "http://b.example/v1", "api_key_env": "B", "max_concurrent": 1},
            },
            "routes": {"sora-2": ["primary", "overflow"], "sora-2-pro": ["primary"]},
        }
    )
)


async def test_dispatch_starts_the_oldest_jobs_within_limits_even_when_replicas_race(store):
    queued = [await _queued_job(store) for _ in range(6)]
    results = await asyncio.gather(*(store.dispatch(REGISTRY) for _ in range(3)))
    started = [job for result in results for job in result.started]
    assert sorted(job.id for job in started) == sorted(job.id for job in queued[:3])
    assert sorted(job.deployment for job in started) == ["overflow", "primary", "primary"]
    assert all(job.stage is Stage.SUBMITTING for job in started)
    # The rest keep their places; positions count from the head of the model's queue.
    waiting = [await store.get(job.id) for job in queued[3:]]
    assert [job.queue_position for job in waiting] == [1, 2, 3]
    # Nothing more starts until a slot frees.
    assert (await store.dispatch(REGISTRY)).started == []
    await store.move(started[0], Stage.GENERATING, Changes(upstream_id="up_1"))
    freed = await store.move(await store.get(started[0].id), Stage.DOWNLOADING, Changes(progress=100))
    assert freed.stage is Stage.DOWNLOADING
    [next_job] = (await store.dispatch(REGISTRY)).started
    assert next_job.id == queued[3].id and next_job.deployment == started[0].deployment


async def test_a_failed_over_job_keeps_its_place_and_avoids_the_failed_deployment(store):
    first = await _queued_job(store)
    [started] = (await store.dispatch(REGISTRY)).started
    assert (started.id, started.deployment) == (first.id, "primary")
    second = await _queued_job(store)
    requeued = await store.move(started, Stage.QUEUED, Changes(give_up_deployment=True))
    assert requeued.tried_deployments == {"primary"} and requeued.deployment is None
    assert requeued.queued_at == started.queued_at  # still ahead of `second`
    result = await store.dispatch(REGISTRY)
    assert [(job.id, job.deployment) for job in result.started] == [
        (first.id, "overflow"),
        (second.id, "primary"),
    ]


async def test_a_job_every_deployment_failed_is_reported_stranded(store):
    job = await _queued_job(store)
    pro = await store.move(
        await store.insert_admitting(
            job_id=new_job_id(), owner_id="o", spec=SPEC_PRO, request_id=None, traceparent=""
        ),
        Stage.QUEUED,
    )
    [started] = [j for j in (await store.dispatch(REGISTRY)).started if j.id == pro.id]
    await store.move(started, Stage.QUEUED, Changes(give_up_deployment=True))
    result = await store.dispatch(REGISTRY)
    assert [j.id for j in result.stranded] == [pro.id]
    assert job.id not in [j.id for j in result.stranded]


async def test_the_request_budget_is_shared_between_replicas(store):
    deployment = REGISTRY.deployments["primary"]
    slow = Deployment(name="tight", base_url=deployment.base_url, api_key_env="A", requests_per_minute=60)
    replica_a = RequestBudget(store._engine, slow)
    replica_b = RequestBudget(store._engine, slow)
    assert burst_size(slow) == 2.0
    taken = [await replica_a._try_take(), await replica_b._try_take(), await replica_a._try_take()]
    assert taken == [True, True, False]  # a burst of two, then one token per second for everyone


async def test_provider_webhooks_count_once_and_find_their_job(store):
    await _queued_job(store)
    [started] = (await store.dispatch(REGISTRY)).started
    job = await store.move(started, Stage.GENERATING, Changes(upstream_id="up_9"))
    event = {
        "event_id": "evt_1",
        "deployment": "primary",
        "upstream_id": "up_9",
        "event_type": "video.completed",
    }
    first, found = await store.record_provider_event(**event)
    again, _ = await store.record_provider_event(**event)
    assert (first, again) == (True, False)
    assert found is not None and found.id == job.id
    elsewhere, nobody = await store.record_provider_event(
        **{**event, "event_id": "evt_2", "deployment": "overflow"}
    )
    assert elsewhere and nobody is None  # the same upstream id on another deployment is another video


async def test_finished_videos_are_leased_before_overdue_polls(store):
    polling = []
    for n in range(3):
        job = await store.move(await _started_job(store), Stage.GENERATING, Changes(upstream_id=f"up_{n}"))
        polling.append(job)
    ready = await store.move(
        await store.move(await _started_job(store), Stage.GENERATING, Changes(upstream_id="up_done")),
        Stage.DOWNLOADING,
        Changes(progress=100),
    )
    [first] = await store.lease_due(worker_id="w", limit=1, lease_seconds=60, admission_grace_seconds=60)
    assert first.id == ready.id  # although every poll fell due earlier
    rest = await store.lease_due(worker_id="w", limit=10, lease_seconds=60, admission_grace_seconds=60)
    assert {job.id for job in rest} == {job.id for job in polling}


@pytest.mark.parametrize("per_minute", [1, 2, 29, 30, 60, 600, 10_000])
def test_no_minute_can_exceed_the_budget(per_minute):
    deployment = Deployment(name="d", base_url="http://x/v1", api_key_env="K", requests_per_minute=per_minute)
    assert burst_size(deployment) + 60 * refill_per_second(deployment) <= max(
        per_minute, burst_size(deployment) + 30
    )
    assert burst_size(deployment) >= 1
