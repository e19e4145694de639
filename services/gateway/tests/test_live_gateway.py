"""The gateway's live events against real NATS JetStream and PostgreSQL, over real sockets.

Status events are published here exactly as the jobs service's outbox relay publishes them (same
stream, subject and payload), so these tests need no jobs service: the replay/live join under a
steady flow of events, one socket's overlapping subscriptions merged without a repeat, a slow
client dropped while others keep up, and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from servicekit.bus import connect_nats, ensure_stream, publish
from servicekit.db import make_engine, upgrade_schema
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.gateway import app as gateway_app
from services.gateway.config import LiveSettings, Settings
from services.gateway.event_feed import EventFeed
from services.gateway.fanout import DeliveredSequences, FanoutHub
from services.gateway.identity import IdentityStore
from services.gateway.keys import EVENT_FEED, LIVE_HUB
from services.jobs.subjects import JOBS_STREAM, status_subject
from tests.helpers import eventually

pytestmark = pytest.mark.integration


@dataclass
class Bus:
    nc: NatsClient
    js: JetStreamContext

    async def status_changed(self, owner: str, job_id: str, sequence: int, *, prompt: str = "a cat") -> None:
        """One event as the outbox relay sends it."""
        status = jobs_pb2.JOB_STATUS_IN_PROGRESS
        job = jobs_pb2.Job(id=job_id, owner_id=owner, model="sora-2", prompt=prompt, status=status)
        event = events_pb2.VideoStatusChangedEvent(event_id=uuid.uuid4().hex, sequence=sequence, job=job)
        payload = event.SerializeToString()
        await publish(self.js, status_subject(owner, job_id), payload, msg_id=f"{job_id}:{sequence}")


@pytest.fixture
async def bus(infrastructure) -> AsyncIterator[Bus]:
    nc = await connect_nats(infrastructure.nats_url, name="live-tests")
    js = nc.jetstream()
    await ensure_stream(js, JOBS_STREAM)
    yield Bus(nc, js)
    await nc.close()


async def test_replay_and_live_meet_without_gap_or_duplicate_while_events_keep_coming(infrastructure, bus):
    owner, job_id = f"user_{uuid.uuid4().hex[:8]}", f"video_{uuid.uuid4().hex}"
    hub = FanoutHub(capacity=1000)
    feed = EventFeed(infrastructure.nats_url, hub)
    feed.start()
    try:
        await feed.wait_subscribed()
        total = 300
        for sequence in range(1, 101):
            await bus.status_changed(owner, job_id, sequence)

        async def keep_publishing() -> None:
            for sequence in range(101, total + 1):
                await bus.status_changed(owner, job_id, sequence)

        publishing = asyncio.create_task(keep_publishing())
        # A client resuming from event 40 while events keep arriving: register, then read the stream.
        subscriber = hub.subscribe(owner)
        hub.watch(subscriber, job_id)
        sent = DeliveredSequences()
        caught_up = await feed.catch_up(owner, job_id, after=sent.resume_after(job_id, 40))
        await publishing
        received = [event.sequence for event in caught_up.events if sent.admit(event)]
        while not received or received[-1] < total:
            await subscriber.wait()
            received += [event.sequence for event in subscriber.take() if sent.admit(event)]
        assert received == list(range(41, total + 1))
        assert caught_up.events[0].sequence == 41  # the replay did part of the work
    finally:
        await feed.stop()


async def test_a_socket_on_all_that_resumes_and_resubscribes_a_video_sends_each_event_once_in_order(
    infrastructure, bus
):
    """What `LiveSocket` does when a client on "all" resumes a video from an earlier event id and
    then subscribes to it again, while events keep coming: one record merges the three."""
    owner, job_id = f"user_{uuid.uuid4().hex[:8]}", f"video_{uuid.uuid4().hex}"
    hub = FanoutHub(capacity=1000)
    feed = EventFeed(infrastructure.nats_url, hub)
    feed.start()
    try:
        await feed.wait_subscribed()
        socket = hub.subscribe(owner)
        hub.watch_all(socket)
        sent = DeliveredSequences(limit=10)
        total = 200
        for sequence in range(1, 51):
            await bus.status_changed(owner, job_id, sequence)
        await socket.wait()
        received = [event.sequence for event in socket.take() if sent.admit(event)]  # through "all"

        async def keep_publishing() -> None:
            for sequence in range(51, total + 1):
                await bus.status_changed(owner, job_id, sequence)

        publishing = asyncio.create_task(keep_publishing())
        # The resume names an id older than what "all" sent; the second subscribe names none.
        for last_event_id in (received[-1] // 2, None):
            hub.watch(socket, job_id)
            after = sent.resume_after(job_id, last_event_id)
            assert after == received[-1]  # continues after what this socket sent: no rewind
            caught_up = await feed.catch_up(owner, job_id, after)
            received += [event.sequence for event in caught_up.events if sent.admit(event)]
        await publishing
        while received[-1] < total:
            await socket.wait()
            received += [event.sequence for event in socket.take() if sent.admit(event)]
        assert received == list(range(1, total + 1))
    finally:
        await feed.stop()


# --- through the gateway over real sockets ------------------------------------------------------


@dataclass
class Gateway:
    url: str
    port: int
    app: web.Application
    user_id: str
    key: str


async def _user_with_key(database_url: str) -> tuple[str, str]:
    await asyncio.to_thread(upgrade_schema, database_url, gateway_app.MIGRATIONS, gateway_app.SCHEMA)
    engine = make_engine(database_url, pool_size=1)
    user_id, key = f"user_{uuid.uuid4().hex[:8]}", f"vf_test_{uuid.uuid4().hex}"
    await IdentityStore(engine).ensure_user_with_key(user_id=user_id, name=user_id, role="user", api_key=key)
    await engine.dispose()
    return user_id, key


def _settings(database_url: str, nats_url: str, live: LiveSettings | None = None) -> Settings:
    return Settings(
        database_url=database_url,
        jobs_address="127.0.0.1:9",  # unused: subscribing to "all" asks the jobs service nothing
        port=0,
        nats_url=nats_url,
        live=live or LiveSettings(),
    )


@pytest.fixture
async def gateway(fresh_database_url, infrastructure, bus) -> AsyncIterator[Gateway]:
    user_id, key = await _user_with_key(fresh_database_url)
    live = LiveSettings(heartbeat_seconds=15, queue_events=4, write_timeout_seconds=60)
    async with gateway_app.serve(_settings(fresh_database_url, infrastructure.nats_url, live)) as running:
        await running.app[EVENT_FEED].wait_subscribed()
        yield Gateway(f"http://127.0.0.1:{running.port}", running.port, running.app, user_id, key)


class RawSocket:
    """A WebSocket client that reads only when told to, with a tiny receive buffer: a slow client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, key: str) -> RawSocket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        challenge = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {challenge}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {key}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send_json(self, message: dict[str, object]) -> None:
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        await self.writer.drain()

    async def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (unmasked, unfragmented)."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)


async def test_a_slow_socket_is_closed_with_4001_while_the_others_get_every_event(gateway, bus):
    slow = await RawSocket.connect(gateway.port, gateway.key)
    await slow.send_json({"type": "subscribe", "videos": "all"})
    opcode, payload = await slow.frame()
    assert (opcode, json.loads(payload)) == (0x1, {"type": "subscribed", "videos": "all"})

    total = 120
    big_prompt = "x" * 60_000  # fills the slow client's buffers in a few events
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{gateway.url}/v1/ws", headers={"Authorization": f"Bearer {gateway.key}"}) as fast,
    ):
        await fast.send_json({"type": "subscribe", "videos": "all"})
        assert (await fast.receive_json())["type"] == "subscribed"

        async def read_all() -> list[int]:
            sequences: list[int] = []
            while len(sequences) < total:
                message = await fast.receive_json()
                sequences.append(message["sequence"])
            return sequences

        reading = asyncio.create_task(read_all())
        for sequence in range(1, total + 1):
            await bus.status_changed(gateway.user_id, "video_big", sequence, prompt=big_prompt)
        async with asyncio.timeout(60):
            assert await reading == list(range(1, total + 1))

    hub = gateway.app[LIVE_HUB]

    async def dropped() -> bool | None:
        return True if hub.dropped_too_slow == 1 else None

    await eventually(dropped, deadline_seconds=30)
    # The slow client reads at last: what was in flight, then the close frame saying why.
    async with asyncio.timeout(60):
        while True:
            opcode, payload = await slow.frame()
            if opcode == 0x8:
                break
    assert struct.unpack("!H", payload[:2])[0] == 4001
    assert b"resume" in payload[2:]
    slow.writer.close()


async def test_shutdown_closes_sockets_with_1001_and_unsubscribes(fresh_database_url, infrastructure, bus):
    _, key = await _user_with_key(fresh_database_url)
    async with aiohttp.ClientSession() as http:
        async with gateway_app.serve(_settings(fresh_database_url, infrastructure.nats_url)) as running:
            feed: EventFeed = running.app[EVENT_FEED]
            await feed.wait_subscribed()
            ws = await http.ws_connect(
                f"http://127.0.0.1:{running.port}/v1/ws", headers={"Authorization": f"Bearer {key}"}
            )
            await ws.send_json({"type": "subscribe", "videos": "all"})
            assert (await ws.receive_json())["type"] == "subscribed"
            assert running.app[LIVE_HUB].subscriber_count == 1
            receiving = asyncio.create_task(ws.receive())  # a client reads, so it answers the close
        # Leaving `serve` is the graceful stop: the socket was told to go elsewhere, not cut.
        closing = await receiving
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1001
        assert running.app[LIVE_HUB].subscriber_count == 0
        assert not feed.ready
        await ws.close()
