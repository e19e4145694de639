"""The client webhook worker against real PostgreSQL and a real HTTP receiver (status events are
handed to it directly here; tests/test_client_webhooks.py runs the whole path through NATS).

Covers leases (replicas never send the same try), fencing (a try whose lease ran out cannot record),
signed retries with one stable webhook-id, giving up, and signing during a secret rotation.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from servicekit.db import make_engine
from servicekit.webhooks import verify
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.gateway.config import ClientWebhookSettings
from services.gateway.openai_format import video_resource
from services.gateway.tests.running_gateway import migrated
from services.gateway.tests.webhook_receiver import webhook_receiver
from services.gateway.webhook_delivery import WebhookWorker
from services.gateway.webhook_events import VIDEO_COMPLETED, VIDEO_FAILED, VIDEO_PROGRESS
from services.gateway.webhook_store import NewDelivery, WebhookStore, webhook_deliveries
from tests.helpers import eventually

pytestmark = pytest.mark.integration

FAST = ClientWebhookSettings(
    allow_private=True,
    max_attempts=5,
    timeout_seconds=5,
    retry_base_seconds=0.05,
    retry_max_seconds=0.2,
    poll_seconds=0.05,
)


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await migrated(fresh_database_url), pool_size=5)
    yield engine
    await engine.dispose()


@asynccontextmanager
async def running_worker(
    store: WebhookStore, settings: ClientWebhookSettings = FAST
) -> AsyncIterator[WebhookWorker]:
    worker = WebhookWorker(settings, store, nats_url="")  # events are handed in by the test
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


def _event(
    owner_id: str, status: jobs_pb2.JobStatus.ValueType, *, sequence: int = 1, video_id: str = ""
) -> events_pb2.VideoStatusChangedEvent:
    job = jobs_pb2.Job(
        id=video_id or f"video_{uuid.uuid4().hex}",
        owner_id=owner_id,
        model="sora-2",
        status=status,
        prompt="a cat",
        size="720x1280",
        seconds=4,
        progress=100 if status == jobs_pb2.JOB_STATUS_COMPLETED else 40,
        create_time=Timestamp(seconds=1_700_000_000),
    )
    return events_pb2.VideoStatusChangedEvent(
        event_id=uuid.uuid4().hex, sequence=sequence, occur_time=Timestamp(seconds=1_700_000_100), job=job
    )


async def _rows(engine: AsyncEngine) -> dict[str, tuple[str, int]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(webhook_deliveries.c.id, webhook_deliveries.c.status, webhook_deliveries.c.attempts)
            )
        ).all()
    return {row.id: (row.status, row.attempts) for row in rows}


def _delivery(owner_id: str, url: str, endpoint_id: str | None) -> NewDelivery:
    return NewDelivery(
        id=f"msg_{uuid.uuid4().hex}",
        owner_id=owner_id,
        video_id=f"video_{uuid.uuid4().hex}",
        event_type=VIDEO_COMPLETED,
        endpoint_id=endpoint_id,
        url=url,
        payload=b"{}",
    )


async def test_two_replicas_never_lease_the_same_delivery(engine):
    store, other_replica = WebhookStore(engine), WebhookStore(engine)
    endpoint, _ = await store.create_endpoint(
        owner_id="user_a", url="https://a.example/hook", events=(VIDEO_COMPLETED,)
    )
    planned = [_delivery("user_a", endpoint.url, endpoint.id) for _ in range(40)]
    assert await store.enqueue(planned) == 40
    assert await store.enqueue(planned) == 0  # the same events again add nothing
    first, second = await asyncio.gather(
        store.claim(limit=30, lease_seconds=60, max_attempts=5),
        other_replica.claim(limit=30, lease_seconds=60, max_attempts=5),
    )
    first_ids, second_ids = {item.id for item in first}, {item.id for item in second}
    assert not first_ids & second_ids
    assert first_ids | second_ids == {item.id for item in planned}
    assert {item.attempt for item in [*first, *second]} == {1}
    assert await store.claim(limit=10, lease_seconds=60, max_attempts=5) == []  # all leased


async def test_a_try_whose_lease_ran_out_cannot_record_its_result(engine):
    store = WebhookStore(engine)
    endpoint, _ = await store.create_endpoint(
        owner_id="user_a", url="https://a.example/hook", events=(VIDEO_COMPLETED,)
    )
    await store.enqueue([_delivery("user_a", endpoint.url, endpoint.id)])
    (stale,) = await store.claim(limit=1, lease_seconds=0, max_attempts=5)  # a lease already over
    (current,) = await store.claim(limit=1, lease_seconds=60, max_attempts=5)
    assert (current.id, current.attempt) == (stale.id, 2)
    await store.record_delivered(stale, 200)  # too late: someone else holds it now
    assert (await _rows(engine))[stale.id] == ("pending", 2)
    await store.record_delivered(current, 200)
    assert (await _rows(engine))[stale.id] == ("delivered", 2)


async def test_a_failing_receiver_gets_retries_with_one_webhook_id_each_signed(engine):
    store = WebhookStore(engine)
    async with webhook_receiver(fail_first=2) as receiver:
        _, secret = await store.create_endpoint(
            owner_id="user_a", url=receiver.url(), events=(VIDEO_COMPLETED, VIDEO_FAILED)
        )
        event = _event("user_a", jobs_pb2.JOB_STATUS_COMPLETED)
        async with running_worker(store) as worker:
            assert await worker.handle_event(event) == 1
            assert await worker.handle_event(event) == 0  # a redelivered event: no second delivery
            await receiver.wait_until(lambda: len(receiver.accepted()) == 1)
    tries = receiver.received
    assert [item.status for item in tries] == [500, 500, 204]
    assert len({item.webhook_id for item in tries}) == 1
    for item in tries:
        verify(secret, item.headers, item.body)
        assert item.headers["content-type"] == "application/json"
    assert json.loads(tries[0].body) == {
        "type": "video.completed",
        "timestamp": "2023-11-14T22:15:00Z",
        "data": video_resource(event.job),
    }
    assert (await _rows(engine))[tries[0].webhook_id] == ("delivered", 3)


async def test_events_go_only_to_endpoints_that_asked_for_their_type_and_owner(engine):
    store = WebhookStore(engine)
    async with webhook_receiver() as receiver:
        await store.create_endpoint(owner_id="user_a", url=receiver.url("/final"), events=(VIDEO_COMPLETED,))
        await store.create_endpoint(
            owner_id="user_a", url=receiver.url("/progress"), events=(VIDEO_PROGRESS,)
        )
        await store.create_endpoint(owner_id="user_b", url=receiver.url("/other"), events=(VIDEO_COMPLETED,))
        video_id = f"video_{uuid.uuid4().hex}"
        async with running_worker(store) as worker:
            assert (
                await worker.handle_event(
                    _event("user_a", jobs_pb2.JOB_STATUS_IN_PROGRESS, video_id=video_id)
                )
                == 1
            )
            assert (
                await worker.handle_event(
                    _event("user_a", jobs_pb2.JOB_STATUS_COMPLETED, sequence=2, video_id=video_id)
                )
                == 1
            )
            await receiver.wait_until(lambda: len(receiver.accepted()) == 2)
    assert sorted(json.loads(item.body)["type"] for item in receiver.received) == [
        VIDEO_COMPLETED,
        VIDEO_PROGRESS,
    ]


async def test_a_delivery_is_given_up_after_the_last_try(engine):
    store = WebhookStore(engine)
    async with webhook_receiver(fail_first=1000) as receiver:
        await store.create_endpoint(owner_id="user_a", url=receiver.url(), events=(VIDEO_FAILED,))
        async with running_worker(store, replace(FAST, max_attempts=3)) as worker:
            await worker.handle_event(_event("user_a", jobs_pb2.JOB_STATUS_FAILED))
            await receiver.wait_until(lambda: len(receiver.received) == 3)
            webhook_id = receiver.received[0].webhook_id

            async def given_up() -> tuple[str, int] | None:
                row = (await _rows(engine))[webhook_id]
                return row if row[0] != "pending" else None

            # The last try's result is written just after its answer arrives.
            assert await eventually(given_up, deadline_seconds=10) == ("failed", 3)
    assert len(receiver.received) == 3


async def test_during_a_rotation_video_webhooks_are_signed_with_the_old_and_the_new_secret(engine):
    store = WebhookStore(engine)
    _, old = await store.rotate_secret("user_a", overlap=timedelta(hours=1))
    info, new = await store.rotate_secret("user_a", overlap=timedelta(hours=1))
    assert info.previous_expires_at is not None and info.previous_expires_at > datetime.now(UTC)
    async with webhook_receiver() as receiver:
        event = _event("user_a", jobs_pb2.JOB_STATUS_COMPLETED)
        await store.subscribe_video(owner_id="user_a", video_id=event.job.id, url=receiver.url())
        async with running_worker(store) as worker:
            assert await worker.handle_event(event) == 1
            await receiver.wait_until(lambda: len(receiver.accepted()) == 1)
    (delivered,) = receiver.received
    assert len(delivered.headers["webhook-signature"].split()) == 2
    verify(old, delivered.headers, delivered.body)
    verify(new, delivered.headers, delivered.body)


async def test_two_workers_deliver_each_event_once(engine):
    stores = [WebhookStore(engine), WebhookStore(engine)]
    async with webhook_receiver() as receiver:
        await stores[0].create_endpoint(owner_id="user_a", url=receiver.url(), events=(VIDEO_COMPLETED,))
        events = [_event("user_a", jobs_pb2.JOB_STATUS_COMPLETED) for _ in range(30)]
        async with running_worker(stores[0]) as first, running_worker(stores[1]) as second:
            # Both replicas see every event (as after a redelivery) and race to send them.
            for event in events:
                await asyncio.gather(first.handle_event(event), second.handle_event(event))
            await receiver.wait_until(lambda: len(receiver.accepted()) == len(events))
    rows = await _rows(engine)
    assert sorted(rows.values()) == [("delivered", 1)] * len(events)
    assert sorted(item.webhook_id for item in receiver.received) == sorted(rows)
