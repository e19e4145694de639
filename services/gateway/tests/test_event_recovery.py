"""The gateway's two status-event consumers when NATS starts late or comes back without its data.

Against a nats-server of this module's own (so wiping it disturbs no other test) and real
PostgreSQL: the live feed (`EventFeed`, an ordered consumer) and the client webhook intake (a durable
pull consumer). Events are published as the jobs service's outbox relay publishes them: it makes
the stream when it finds none, and refills a stream made anew with marked history. Neither consumer is
restarted: each must notice on its own and carry on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from servicekit.bus import REPLAYED_HEADER, connect_nats, ensure_stream, publish
from servicekit.db import make_engine
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.gateway.config import ClientWebhookSettings
from services.gateway.event_feed import EventFeed
from services.gateway.fanout import FanoutHub, Subscriber
from services.gateway.tests.running_gateway import migrated
from services.gateway.tests.webhook_receiver import WebhookReceiver, webhook_receiver
from services.gateway.webhook_delivery import WebhookWorker
from services.gateway.webhook_events import EVENT_TYPES
from services.gateway.webhook_store import WebhookStore
from services.jobs.subjects import JOBS_STREAM, status_subject
from tests.helpers import eventually
from tests.reliability.outage_control import RestartableInfrastructure, Server

pytestmark = pytest.mark.integration

IN_PROGRESS, COMPLETED = jobs_pb2.JOB_STATUS_IN_PROGRESS, jobs_pb2.JOB_STATUS_COMPLETED


@dataclass
class Consumers:
    """Both consumers of one gateway replica, a client watching one video, and its webhook endpoint."""

    owner: str
    video_id: str
    feed: EventFeed
    watcher: Subscriber
    receiver: WebhookReceiver
    live: list[int] = field(default_factory=list)  # sequences the watcher got, in order

    async def live_until(self, sequence: int) -> list[int]:
        async with asyncio.timeout(60):
            while not self.live or self.live[-1] < sequence:
                await self.watcher.wait()
                self.live += [event.sequence for event in self.watcher.take()]
        return self.live

    async def webhooks_until(self, count: int) -> list[tuple[str, int]]:
        """(type, progress) of the webhooks received, once there are `count`."""
        await self.receiver.wait_until(lambda: len(self.receiver.accepted()) >= count, deadline_seconds=60)
        bodies = [json.loads(item.body) for item in self.receiver.accepted()]
        return sorted((body["type"], body["data"]["progress"]) for body in bodies)


@asynccontextmanager
async def gateway_consumers(nats_url: str, database_url: str) -> AsyncIterator[Consumers]:
    engine = make_engine(await migrated(database_url), pool_size=4)
    store = WebhookStore(engine)
    owner, video_id = f"user_{uuid.uuid4().hex[:8]}", f"video_{uuid.uuid4().hex}"
    hub = FanoutHub(capacity=100)
    watcher = hub.subscribe(owner)
    hub.watch(watcher, video_id)
    feed = EventFeed(nats_url, hub)
    settings = ClientWebhookSettings(
        allow_private=True, retry_base_seconds=0.05, retry_max_seconds=0.2, poll_seconds=0.05
    )
    worker = WebhookWorker(settings, store, nats_url)
    async with webhook_receiver() as receiver:
        await store.create_endpoint(owner_id=owner, url=receiver.url(), events=EVENT_TYPES)
        feed.start()
        worker.start()
        try:
            yield Consumers(owner, video_id, feed, watcher, receiver)
        finally:
            await worker.stop()
            await feed.stop()
            await engine.dispose()


@asynccontextmanager
async def jobs_publisher(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await connect_nats(nats_url, name="event-recovery-tests")
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def status_changed(
    js: JetStreamContext,
    consumers: Consumers,
    sequence: int,
    status: jobs_pb2.JobStatus.ValueType,
    *,
    replayed: bool = False,
) -> None:
    """One status event as the jobs service's outbox relay sends it (progress = 10 x sequence);
    `replayed`: published again into a stream made anew, as history."""
    job = jobs_pb2.Job(
        id=consumers.video_id,
        owner_id=consumers.owner,
        model="sora-2",
        status=status,
        prompt="a cat",
        size="720x1280",
        seconds=4,
        progress=10 * sequence,
        create_time=Timestamp(seconds=1_700_000_000),
    )
    event = events_pb2.VideoStatusChangedEvent(event_id=uuid.uuid4().hex, sequence=sequence, job=job)
    subject = status_subject(consumers.owner, consumers.video_id)
    msg_id = f"{consumers.video_id}:{sequence}"
    await ensure_stream(js, JOBS_STREAM)  # as the relay does when a publish found no stream
    headers = {REPLAYED_HEADER: "1"} if replayed else None
    await publish(js, subject, event.SerializeToString(), msg_id=msg_id, headers=headers)


@pytest.fixture
async def nats_server(tmp_path) -> AsyncIterator[RestartableInfrastructure]:
    """Only its NATS is used; each test starts it when it wants."""
    servers = RestartableInfrastructure(tmp_path)
    try:
        yield servers
    finally:
        await servers.stop(Server.NATS)


async def test_both_consumers_carry_on_with_new_events_after_nats_comes_back_without_its_data(
    nats_server: RestartableInfrastructure, fresh_database_url: str
) -> None:
    await nats_server.start(Server.NATS)
    async with (
        jobs_publisher(nats_server.nats_url) as js,
        gateway_consumers(nats_server.nats_url, fresh_database_url) as consumers,
    ):
        await ensure_stream(js, JOBS_STREAM)  # the relay makes it at start-up; consumers wait for it
        await consumers.feed.wait_subscribed()
        await status_changed(js, consumers, 1, IN_PROGRESS)
        assert await consumers.live_until(1) == [1]
        assert await consumers.webhooks_until(1) == [("video.progress", 10)]

        await nats_server.stop(Server.NATS)
        await nats_server.lose_data(Server.NATS)
        await nats_server.start(Server.NATS)
        # Published at once: before either consumer may have noticed that the stream is new.
        # The relay refills the stream with history first; live clients are not sent it again.
        await status_changed(js, consumers, 1, IN_PROGRESS, replayed=True)
        await status_changed(js, consumers, 2, IN_PROGRESS)
        await status_changed(js, consumers, 3, COMPLETED)

        assert await consumers.live_until(3) == [1, 2, 3]
        assert await consumers.webhooks_until(3) == [
            ("video.completed", 30),
            ("video.progress", 10),
            ("video.progress", 20),
        ]
        await eventually(lambda: _true_if(consumers.feed.ready))


async def test_consumers_started_before_nats_get_the_first_events_once_it_is_up(
    nats_server: RestartableInfrastructure, fresh_database_url: str
) -> None:
    async with gateway_consumers(nats_server.nats_url, fresh_database_url) as consumers:
        assert not consumers.feed.ready
        await nats_server.start(Server.NATS)
        async with jobs_publisher(nats_server.nats_url) as js:
            # No stream yet: whoever comes first makes it. The webhook consumer may come later
            # than these events and still handles them.
            await status_changed(js, consumers, 1, IN_PROGRESS)
            await status_changed(js, consumers, 2, COMPLETED)
            assert await consumers.webhooks_until(2) == [("video.completed", 20), ("video.progress", 10)]
            await consumers.feed.wait_subscribed()
            await status_changed(js, consumers, 3, COMPLETED)
            assert (await consumers.live_until(3))[-1] == 3


async def _true_if(condition: bool) -> bool | None:
    return True if condition else None


async def test_both_consumers_stop_promptly_while_their_stream_is_missing(
    infrastructure, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No relay has made the stream: both consumers retry until it exists. Stopping must end the
    retries (they once spun without pause, and the gateway outlived its grace period)."""
    missing = f"JOBS_{uuid.uuid4().hex[:8]}"
    engine = make_engine(await migrated(fresh_database_url), pool_size=2)
    feed = EventFeed(infrastructure.nats_url, FanoutHub(capacity=10), stream_name=missing)
    worker = WebhookWorker(
        ClientWebhookSettings(allow_private=True),
        WebhookStore(engine),
        infrastructure.nats_url,
        stream_name=missing,
    )
    try:
        with caplog.at_level(logging.WARNING):
            feed.start()
            worker.start()

            def refused(logger: str) -> bool:
                return any(
                    record.name == logger and "not found" in str(getattr(record, "error", "")).lower()
                    for record in caplog.records
                )

            await eventually(
                lambda: _true_if(
                    refused("services.gateway.event_feed") and refused("services.gateway.webhook_delivery")
                )
            )
            async with asyncio.timeout(15):
                await feed.stop()
                await worker.stop()
            assert not feed.ready
    finally:
        await engine.dispose()
