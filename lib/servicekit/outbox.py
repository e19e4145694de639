"""Transactional outbox: a state change and its event commit together; a relay publishes them.

Each service owns an `outbox` table in its schema. Producers insert rows inside their own
transaction (`outbox_insert`). `OutboxRelay` publishes unpublished rows in id order to JetStream
with `Nats-Msg-Id` set, so a relay that crashes after publishing and before marking a row
only causes a duplicate that JetStream drops. A transaction-scoped advisory lock keeps one
relay active at a time across replicas, which keeps events in commit order.

Given its `StreamSpec`, the relay also owns the stream: it alone makes it (consumers wait for it),
at start-up (NATS may be down then: it keeps trying). NATS that came back without its data has no
stream: the next publish fails, and an idle relay looks every `IDLE_STREAM_CHECK_SECONDS`. After a
failed publish (or an acknowledgement whose sequence went back: another replica made it first),
the relay looks the stream up before publishing again, makes it if need be and, when it holds less
than the outbox says was published, publishes once more, before anything newer, every row of the
last `REPUBLISH_HORIZON`, marked with `REPLAYED_HEADER`. Clients that resume then find the history
they expect, in commit order; live consumers skip the marked copies. A batch that publishes costs no
lookup otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import trace
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from servicekit.bus import REPLAYED_HEADER, StreamSpec, ensure_stream, publish
from servicekit.lifecycle import wait_for_signal
from servicekit.telemetry import context_from_headers, inject_trace_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("servicekit.outbox")

IDLE_STREAM_CHECK_SECONDS = 5.0
# How far back history is published again after NATS lost its data. Client webhook deliveries are
# kept longer (a week), so their ids still drop the copies.
REPUBLISH_HORIZON = timedelta(hours=24)


@dataclass(frozen=True)
class _StreamLook:
    created: datetime | None
    lost_history: bool


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("subject", Text, nullable=False),
        Column("msg_id", Text, nullable=False, unique=True),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("outbox_unpublished", "id", postgresql_where="published_at IS NULL"),
    )


def outbox_insert(table: Table, *, subject: str, payload: bytes, msg_id: str) -> Insert:
    """The insert to run in the producer's transaction; it records the current trace context."""
    return table.insert().values(
        subject=subject, msg_id=msg_id, payload=payload, headers=inject_trace_headers()
    )


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        js: JetStreamContext,
        *,
        stream: StreamSpec | None = None,
        batch_size: int = 200,
        idle_interval: float = 0.5,
        max_backoff: float = 5.0,
    ) -> None:
        self._engine = engine
        self._table = table
        self._js = js
        self._stream = stream
        # When the stream this process last saw was created; None until it first looks.
        self._stream_created: datetime | None = None
        # Something said the stream may have been lost: the next batch looks before publishing.
        self._stream_in_doubt = False
        self._last_ack_seq = 0
        self._looked_at = 0.0  # time.monotonic() of the last look at the stream
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._lock_key = zlib.crc32(f"{table.schema}.{table.name}".encode())

    def wake(self) -> None:
        """Producers call this after commit so events leave at once instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._idle_interval
        while not stop.is_set():
            try:
                published = await self.publish_pending()
                backoff = self._idle_interval
            except Exception as exc:
                # NATS or PostgreSQL is away: the rows stay put and go out once it is back.
                log.warning("outbox relay paused", extra={"error": repr(exc), "retry_in": backoff})
                published = 0
                await wait_for_signal(stop, seconds=backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if published < self._batch_size:
                await wait_for_signal(stop, self._wake, seconds=self._idle_interval)
                self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows went out."""
        table = self._table
        done: list[int] = []
        failure: Exception | None = None
        async with self._engine.begin() as conn:
            if not await conn.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key))):
                return 0
            rows = await self._pending(conn)
            look = await self._look_at_stream(conn) if self._stream_needs_a_look(idle=not rows) else None
            if look is not None and look.lost_history:
                await self._republish_recent(conn)
                rows = await self._pending(conn)
            for row in rows:
                try:
                    await self._publish_row(row)
                except Exception as exc:
                    # Raise only after the commit below: raising inside `begin()` would roll back
                    # the marks of the rows that did go out, and they would be published again.
                    failure = exc
                    break
                done.append(row.id)
            if done:
                await conn.execute(update(table).where(table.c.id.in_(done)).values(published_at=func.now()))
        if look is not None:  # only once the refill it called for is committed
            self._stream_created, self._stream_in_doubt = look.created, False
            self._looked_at = time.monotonic()
        if failure is not None:
            self._stream_in_doubt = True  # NATS may have come back without it
            raise failure
        return len(done)

    async def _pending(self, conn: AsyncConnection) -> list[Any]:
        table = self._table
        return list(
            (
                await conn.execute(
                    select(table.c.id, table.c.subject, table.c.msg_id, table.c.payload, table.c.headers)
                    .where(table.c.published_at.is_(None))
                    .order_by(table.c.id)
                    .limit(self._batch_size)
                )
            ).all()
        )

    def _stream_needs_a_look(self, *, idle: bool) -> bool:
        if self._stream is None:
            return False
        if self._stream_created is None or self._stream_in_doubt:
            return True
        return idle and time.monotonic() - self._looked_at >= IDLE_STREAM_CHECK_SECONDS

    async def _look_at_stream(self, conn: AsyncConnection) -> _StreamLook:
        """Make the stream if it is missing; it lost history when it holds fewer events than the
        outbox published within the horizon, which only a stream made anew does. The count is
        taken only when the stream is one this process has not seen."""
        assert self._stream is not None
        try:
            info = await self._js.stream_info(self._stream.name)
        except NotFoundError:
            info = None
        if info is None or self._stream_created is None:
            # Missing, or the first look of this process: make it, or converge its settings.
            await ensure_stream(self._js, self._stream)
            info = await self._js.stream_info(self._stream.name)
        if info.created == self._stream_created:
            return _StreamLook(info.created, lost_history=False)
        table = self._table
        published = await conn.scalar(
            select(func.count()).where(table.c.published_at >= func.now() - REPUBLISH_HORIZON)
        )
        return _StreamLook(info.created, lost_history=(info.state.messages or 0) < (published or 0))

    async def _republish_recent(self, conn: AsyncConnection) -> None:
        """Mark the horizon's rows unpublished and as replays; the batch then starts from them."""
        assert self._stream is not None
        table = self._table
        replayed = await conn.execute(
            update(table)
            .where(table.c.published_at >= func.now() - REPUBLISH_HORIZON)
            .values(published_at=None, headers=table.c.headers.op("||")({REPLAYED_HEADER: "1"}))
        )
        log.warning(
            "stream made anew after NATS lost its data; publishing recent events again",
            extra={"stream": self._stream.name, "events": replayed.rowcount},
        )

    async def _publish_row(self, row: Any) -> None:
        headers: dict[str, str] = dict(row.headers or {})
        with _tracer.start_as_current_span(
            f"publish {row.subject}", context=context_from_headers(headers), kind=trace.SpanKind.PRODUCER
        ):
            outgoing = inject_trace_headers()
            if REPLAYED_HEADER in headers:
                outgoing[REPLAYED_HEADER] = headers[REPLAYED_HEADER]
            ack = await publish(self._js, row.subject, row.payload, msg_id=row.msg_id, headers=outgoing)
        if ack.seq is not None and not ack.duplicate:
            if ack.seq < self._last_ack_seq:
                self._stream_in_doubt = True  # sequences start over in a stream made anew
            self._last_ack_seq = ack.seq
