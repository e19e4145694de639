"""OutboxRelay against real PostgreSQL and NATS JetStream.

Each test gets a fresh database, a uuid-named schema and a uuid-named stream. Tests of a relay
that starts before NATS, or outlives NATS losing its data, run a nats-server of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError
from sqlalchemy import MetaData, Table, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.bus import (
    MSG_ID_HEADER,
    REPLAYED_HEADER,
    StreamSpec,
    connect_nats,
    ensure_stream,
    nats_connection,
)
from servicekit.db import make_engine
from servicekit.outbox import OutboxRelay, outbox_insert, outbox_table
from tests.reliability.outage_control import RestartableInfrastructure, Server

from .conftest import RecordedSpans

pytestmark = pytest.mark.integration


@dataclass
class Outbox:
    engine: AsyncEngine
    table: Table
    nc: NatsClient
    js: JetStreamContext
    stream: str
    nats_url: str

    def subject(self, name: str = "thing.happened") -> str:
        return f"{self.stream}.v1.{name}"

    async def insert(self, payloads: list[bytes], subject: str | None = None) -> list[str]:
        """Each row in its own producer transaction, as services write them."""
        msg_ids = []
        subject = subject or self.subject()
        for payload in payloads:
            msg_id = f"evt_{uuid.uuid4().hex}"
            async with self.engine.begin() as conn:
                await conn.execute(outbox_insert(self.table, subject=subject, payload=payload, msg_id=msg_id))
            msg_ids.append(msg_id)
        return msg_ids

    async def unpublished(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(self.table.c.msg_id)
                .where(self.table.c.published_at.is_(None))
                .order_by(self.table.c.id)
            )
            return list(rows.scalars())

    async def stream_messages(self) -> int:
        return (await self.js.stream_info(self.stream)).state.messages

    def relay(
        self, js: JetStreamContext | None = None, *, batch_size: int = 200, max_backoff: float = 5.0
    ) -> OutboxRelay:
        return OutboxRelay(
            self.engine,
            self.table,
            js or self.js,
            batch_size=batch_size,
            idle_interval=0.05,
            max_backoff=max_backoff,
        )

    async def message(self, seq: int) -> tuple[str, bytes, dict[str, str]]:
        """Subject, payload and headers of the stream's message number `seq`."""
        raw = await self.js.get_msg(self.stream, seq)
        assert raw.subject is not None and raw.data is not None and raw.headers is not None
        return raw.subject, raw.data, raw.headers


@pytest.fixture
async def outbox(fresh_database_url: str, infrastructure, unique_name) -> AsyncIterator[Outbox]:
    schema = unique_name("outbox").lower()
    engine = make_engine(fresh_database_url, pool_size=2)
    table = outbox_table(MetaData(schema=schema))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(table.metadata.create_all)
    nc = await connect_nats(infrastructure.nats_url, name="servicekit-tests")
    js = nc.jetstream()
    stream = unique_name("OUTBOX")
    await ensure_stream(js, StreamSpec(stream, (f"{stream}.>",)))
    try:
        yield Outbox(engine, table, nc, js, stream, infrastructure.nats_url)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()
        await engine.dispose()


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def eventually(check: Callable[[], Awaitable[bool]], deadline_seconds: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    while not await check():
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


async def test_relay_publishes_every_row_once_in_order_with_headers(
    outbox: Outbox, spans: RecordedSpans
) -> None:
    payloads = [f"event {n}".encode() for n in range(25)]
    with spans.tracer().start_as_current_span("producer") as producer:
        msg_ids = await outbox.insert(payloads)
    relay = outbox.relay(batch_size=10)  # several batches
    async with running(relay):
        relay.wake()
        await eventually(lambda: _none_left(outbox))

    assert await outbox.stream_messages() == len(payloads)
    trace_id = format(producer.get_span_context().trace_id, "032x")
    for seq, (payload, msg_id) in enumerate(zip(payloads, msg_ids, strict=True), start=1):
        subject, data, headers = await outbox.message(seq)
        assert (subject, data) == (outbox.subject(), payload)
        assert headers[MSG_ID_HEADER] == msg_id
        version, message_trace_id, _span_id, _flags = headers["traceparent"].split("-")
        assert (version, message_trace_id) == ("00", trace_id)

    async with outbox.engine.connect() as conn:
        stamps = (await conn.execute(select(outbox.table.c.published_at))).scalars().all()
    assert len(stamps) == len(payloads) and all(stamp is not None for stamp in stamps)


async def test_republishing_after_a_crash_before_marking_is_deduplicated(outbox: Outbox) -> None:
    msg_ids = await outbox.insert([b"a", b"b", b"c"])
    relay = outbox.relay()
    assert await relay.publish_pending() == 3
    assert await outbox.stream_messages() == 3

    # The relay published but died before its UPDATE committed: the rows look unpublished again.
    async with outbox.engine.begin() as conn:
        await conn.execute(update(outbox.table).values(published_at=None))
    assert await relay.publish_pending() == 3

    assert await outbox.stream_messages() == 3
    for seq, msg_id in enumerate(msg_ids, start=1):
        _, _, headers = await outbox.message(seq)
        assert headers[MSG_ID_HEADER] == msg_id
    assert await outbox.unpublished() == []


async def test_rows_wait_while_nats_is_unreachable_and_go_out_once_it_is_back(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    msg_ids = await outbox.insert([b"one", b"two", b"three"])
    dead = await nats.connect(outbox.nats_url, allow_reconnect=False)
    await dead.close()
    broken = outbox.relay(dead.jetstream(), max_backoff=0.1)

    with pytest.raises(nats.errors.ConnectionClosedError):
        await broken.publish_pending()
    with caplog.at_level(logging.WARNING, logger="servicekit.outbox"):
        async with running(broken):
            # Keeps retrying with backoff instead of dying; wait until it has failed a few times.
            await eventually(lambda: _count_pauses(caplog, at_least=3))
    assert await outbox.unpublished() == msg_ids
    assert await outbox.stream_messages() == 0

    async with running(outbox.relay()):
        await eventually(lambda: _none_left(outbox))
    assert await outbox.stream_messages() == 3
    for seq, payload in enumerate([b"one", b"two", b"three"], start=1):
        _, data, _ = await outbox.message(seq)
        assert data == payload


async def test_a_failing_row_keeps_the_rows_before_it_published(outbox: Outbox) -> None:
    first = await outbox.insert([b"1", b"2"])
    # No stream captures this subject, so JetStream refuses it (a poison row).
    poison = await outbox.insert([b"lost"], subject=f"NOSTREAM_{uuid.uuid4().hex}.v1.x.y")
    after = await outbox.insert([b"3"])
    relay = outbox.relay()

    with pytest.raises(NoStreamResponseError):
        await relay.publish_pending()

    # The two rows that did go out are marked, so retries do not publish them again (after the
    # duplicate window they would reach consumers twice); order holds, so row 4 waits behind 3.
    assert await outbox.unpublished() == poison + after
    assert await outbox.stream_messages() == len(first)


async def test_only_one_relay_publishes_at_a_time(outbox: Outbox) -> None:
    await outbox.insert([b"x"])
    relay = outbox.relay()
    async with outbox.engine.begin() as conn:
        # Another replica holds the lock for its transaction.
        await conn.execute(select(text(f"pg_advisory_xact_lock({relay._lock_key})")))
        assert await relay.publish_pending() == 0
    assert await relay.publish_pending() == 1


async def test_a_relay_started_while_nats_is_down_publishes_once_it_is_up_and_after_it_lost_its_data(
    outbox: Outbox, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    nats_server = RestartableInfrastructure(tmp_path)  # only its NATS is started, late
    stream = StreamSpec(outbox.stream, (f"{outbox.stream}.>",))
    before = await outbox.insert([b"1", b"2"])
    async with nats_connection(nats_server.nats_url, name="relay-tests") as nc:
        js = nc.jetstream(timeout=1)
        relay = OutboxRelay(
            outbox.engine, outbox.table, js, stream=stream, idle_interval=0.05, max_backoff=0.2
        )
        try:
            with caplog.at_level(logging.WARNING, logger="servicekit.outbox"):
                async with running(relay):
                    await eventually(lambda: _count_pauses(caplog, at_least=2))
                    assert await outbox.unpublished() == before

                    await nats_server.start(Server.NATS)
                    await eventually(lambda: _none_left(outbox))
                    assert await _msg_ids(js, stream.name) == before

                    # NATS comes back empty: the stream is made again and refilled with the
                    # history, marked as such, before what came after, all in commit order.
                    await nats_server.stop(Server.NATS)
                    await nats_server.lose_data(Server.NATS)
                    await nats_server.start(Server.NATS)
                    after = await outbox.insert([b"3", b"4"])
                    relay.wake()
                    await eventually(lambda: _none_left(outbox))
                    assert await _msg_ids(js, stream.name) == before + after
                    assert await _replayed(js, stream.name) == [True, True, False, False]

                    # The refilled stream is complete: nothing is published again.
                    last = await outbox.insert([b"5"])
                    relay.wake()
                    await eventually(lambda: _none_left(outbox))
                    assert await _msg_ids(js, stream.name) == before + after + last
        finally:
            await nats_server.stop(Server.NATS)


async def _msg_ids(js: JetStreamContext, stream: str) -> list[str]:
    return [(headers or {}).get(MSG_ID_HEADER, "") for headers in await _all_headers(js, stream)]


async def _replayed(js: JetStreamContext, stream: str) -> list[bool]:
    return [REPLAYED_HEADER in (headers or {}) for headers in await _all_headers(js, stream)]


async def _all_headers(js: JetStreamContext, stream: str) -> list[dict[str, str] | None]:
    last = (await js.stream_info(stream)).state.last_seq
    return [(await js.get_msg(stream, seq)).headers for seq in range(1, last + 1)]


async def _none_left(outbox: Outbox) -> bool:
    return await outbox.unpublished() == []


async def _count_pauses(caplog: pytest.LogCaptureFixture, *, at_least: int) -> bool:
    return sum(record.getMessage() == "outbox relay paused" for record in caplog.records) >= at_least
