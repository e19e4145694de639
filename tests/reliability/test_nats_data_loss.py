"""NATS that comes back empty, and a platform that starts while NATS is down. No service restarts.

Streams and consumers live in NATS's data; when it comes back without it (a lost JetStream volume,
a fresh pod), the outbox relays make their streams again before their next publish, refilled with
the last day's events from the outbox, and the gateway's consumers make theirs again on their own.
These scenarios check:
- every video completes, one upstream video each, and the ledger is clean (PostgreSQL lost nothing);
- the new streams hold every event, in commit order, so a client resuming from the start gets each
  video's whole history; every event published after the loss reached a WebSocket client that stayed
  connected through it and the client's webhook endpoint;
- a stack started while NATS is down serves the API, keeps its events in the outbox, and once NATS
  is up delivers all of them, live and by webhook.

The services run in this process (`running_stack`) against servers of this module's own
(`RestartableInfrastructure`), as in test_outages.py, whose client and audit this file reuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from servicekit.db import make_engine
from sqlalchemy import text
from vidflow.jobs.v1 import events_pb2

from services.gateway.tests.webhook_receiver import webhook_receiver
from services.gateway.webhook_events import EVENT_TYPES, delivery_id, event_type_of
from simulator.config import Settings as SimulatorSettings
from tests.conftest import Stack, running_stack
from tests.helpers import eventually
from tests.reliability.outage_control import RestartableInfrastructure, Server
from tests.reliability.test_outages import (
    GENERATION_SECONDS,
    Tenant,
    _stream_msg_ids,
    assert_nothing_lost_or_doubled,
    live_watch,
    new_tenant,
)

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

JOBS_CI, JOBS_FULL = 4, 20
# A stack that cannot reach NATS must still be serving within this.
START_DEADLINE_SECONDS = 60


# --- what the outboxes hold -----------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    msg_id: str
    payload: bytes
    published_at: datetime | None


async def _outbox(stack: Stack, schema: str) -> list[OutboxRow]:
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(f"SELECT msg_id, payload, published_at FROM {schema}.outbox ORDER BY id")
            )
            return [OutboxRow(row.msg_id, bytes(row.payload), row.published_at) for row in rows]
    finally:
        await engine.dispose()


async def _all_published(stack: Stack, schema: str) -> list[OutboxRow]:
    async def published() -> list[OutboxRow] | None:
        rows = await _outbox(stack, schema)
        return rows if all(row.published_at is not None for row in rows) else None

    return await eventually(published, deadline_seconds=60)


async def _some_unpublished(stack: Stack) -> bool | None:
    return True if any(row.published_at is None for row in await _outbox(stack, "jobs")) else None


async def _database_now(stack: Stack) -> datetime:
    """PostgreSQL's clock, which stamps `published_at`."""
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            now = await conn.scalar(text("SELECT clock_timestamp()"))
            assert isinstance(now, datetime)
            return now
    finally:
        await engine.dispose()


def _status_events(rows: Sequence[OutboxRow], ids: Sequence[str]) -> list[events_pb2.VideoStatusChangedEvent]:
    events = [events_pb2.VideoStatusChangedEvent.FromString(row.payload) for row in rows]
    return [event for event in events if event.job.id in ids]


# --- the client's side ----------------------------------------------------------------------------


async def _webhook_endpoint(tenant: Tenant, url: str, events: Sequence[str]) -> str:
    async with tenant.http.post(
        f"{tenant.stack.gateway_url}/v1/webhook_endpoints",
        json={"url": url, "events": list(events)},
        headers=tenant.headers,
    ) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["id"])


async def _replayed_over_websocket(tenant: Tenant, video_id: str) -> list[dict[str, Any]] | None:
    """Every stored event of the video from the first, over a new WebSocket; None while the gateway
    answers that live events are unavailable."""
    try:
        async with tenant.http.ws_connect(f"{tenant.stack.gateway_url}/v1/ws", headers=tenant.headers) as ws:
            await ws.send_json({"type": "subscribe", "videos": [{"id": video_id, "last_event_id": 0}]})
            events = []
            while (message := json.loads((await ws.receive(timeout=10)).data))["type"] != "subscribed":
                assert message["type"] == "video.status_changed", message
                events.append(message)
            return events
    except aiohttp.WSServerHandshakeError as refused:
        assert refused.status == 503
        return None


async def _true_if(condition: bool) -> bool | None:
    return True if condition else None


# --- 1. NATS comes back without its data ----------------------------------------------------------


async def test_videos_and_their_events_carry_on_when_nats_comes_back_without_its_data(
    servers: RestartableInfrastructure, http: aiohttp.ClientSession, scale
) -> None:
    jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
    simulator = SimulatorSettings(generation_seconds=GENERATION_SECONDS)
    async with running_stack(servers.infrastructure, simulator) as stack:
        tenant = await new_tenant(http, stack, "nats_data_loss")
        async with webhook_receiver() as receiver, live_watch(tenant) as live:
            endpoint_id = await _webhook_endpoint(tenant, receiver.url(), EVENT_TYPES)
            await tenant.create(jobs // 2)
            await eventually(lambda: _true_if(bool(live.events)))  # the first stream is in use
            async with servers.down(Server.NATS, lose_data=True):
                lost_from = await _database_now(stack)
                # Creating needs no NATS; the new videos' events wait in the outbox.
                await tenant.create(jobs - jobs // 2)
                await eventually(lambda: _some_unpublished(stack), deadline_seconds=60)
            await assert_nothing_lost_or_doubled(tenant)

            jobs_rows = await _all_published(stack, "jobs")
            after_loss = [row for row in jobs_rows if row.published_at and row.published_at > lost_from]
            assert after_loss, "no event was published after NATS came back"
            # The new streams hold every event published since, each once, in commit order.
            for schema, stream, subjects in (
                ("jobs", "JOBS", "jobs.v1.>"),
                ("billing", "BILLING", "billing.v1.>"),
            ):
                rows = jobs_rows if schema == "jobs" else await _all_published(stack, schema)
                ours = [row.msg_id for row in rows]
                stored = [
                    msg_id
                    for msg_id in await _stream_msg_ids(stack.nats_url, stream, subjects)
                    if msg_id in set(ours)
                ]
                assert stored == [msg_id for msg_id in ours if msg_id in set(stored)], (
                    f"{stream}: out of order"
                )
                # The relays refilled the new streams with what the lost ones held, before the rest.
                assert set(ours) <= set(stored), f"{stream}: events missing from the new stream"

            # So a client resuming from the start gets each video's whole history.
            for video_id in tenant.ids:
                history = _status_events(jobs_rows, [video_id])
                replayed = await eventually(functools.partial(_replayed_over_websocket, tenant, video_id))
                assert [event["sequence"] for event in replayed] == list(range(1, len(history) + 1))

            # The client that stayed connected got each of them, and every video's end, in order.
            expected = _status_events(after_loss, tenant.ids)
            await eventually(lambda: _true_if(live.finished(tenant.ids)), deadline_seconds=60)
            assert live.closed == []
            for video_id in tenant.ids:
                received = live.sequences(video_id)
                assert received == sorted(set(received)), video_id
                wanted = [event.sequence for event in expected if event.job.id == video_id]
                assert set(wanted) <= set(received), (video_id, wanted, received)

            # The webhook endpoint was sent each of them too (its consumer was made again).
            webhook_ids = {
                delivery_id(endpoint_id, event.job, event_type_of(event.job), event.sequence)
                for event in expected
            }

            def completions() -> set[str]:
                bodies = [json.loads(item.body) for item in receiver.accepted()]
                return {body["data"]["id"] for body in bodies if body["type"] == "video.completed"}

            await receiver.wait_until(
                lambda: (
                    completions() >= set(tenant.ids)
                    and webhook_ids <= {item.webhook_id for item in receiver.accepted()}
                ),
                deadline_seconds=60,
            )


# --- 2. The platform starts while NATS is down ----------------------------------------------------


async def test_a_stack_started_while_nats_is_down_serves_and_delivers_every_event_once_nats_is_up(
    servers: RestartableInfrastructure, http: aiohttp.ClientSession
) -> None:
    await servers.stop(Server.NATS)
    await servers.lose_data(Server.NATS)  # a fresh NATS, too: no stream exists yet
    try:
        async with contextlib.AsyncExitStack() as exits:
            async with asyncio.timeout(START_DEADLINE_SECONDS):
                stack = await exits.enter_async_context(
                    running_stack(servers.infrastructure, SimulatorSettings(generation_seconds=1.0))
                )
            tenant = await new_tenant(http, stack, "nats_down_at_start")
            receiver = await exits.enter_async_context(webhook_receiver())
            await _webhook_endpoint(tenant, receiver.url(), ["video.completed"])
            (video_id,) = await tenant.create(1)
            await eventually(lambda: _some_unpublished(stack), deadline_seconds=60)
            # Live events need NATS: the gateway says so instead of hanging.
            assert await _replayed_over_websocket(tenant, video_id) is None

            await servers.start(Server.NATS)
            await assert_nothing_lost_or_doubled(tenant)
            events = _status_events(await _all_published(stack, "jobs"), [video_id])
            replayed = await eventually(
                lambda: _replayed_over_websocket(tenant, video_id), deadline_seconds=60
            )
            # Every event, from the first: they all went into the stream the relay made.
            assert [event["sequence"] for event in replayed] == [event.sequence for event in events]
            assert [event["sequence"] for event in replayed] == list(range(1, len(events) + 1))
            assert replayed[-1]["data"]["status"] == "completed"

            def completed() -> bool:
                return any(json.loads(item.body)["data"]["id"] == video_id for item in receiver.accepted())

            await receiver.wait_until(completed, deadline_seconds=60)
    finally:
        if not servers.is_up(Server.NATS):
            await servers.start(Server.NATS)
