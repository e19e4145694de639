"""Transactional outbox: a state change and its event commit together; a relay publishes them.

Each service owns an `outbox` table in its schema. Producers insert rows inside their own
transaction (`outbox_insert`). `OutboxRelay` publishes unpublished rows in id order to JetStream
with `Nats-Msg-Id` set, so a relay that crashes after publishing and before marking a row
only causes a duplicate that JetStream drops. A transaction-scoped advisory lock keeps one
relay active at a time across replicas, which keeps events in commit order.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

from nats.js import JetStreamContext
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
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from servicekit.bus import publish
from servicekit.lifecycle import wait_for_signal
from servicekit.telemetry import context_from_headers, inject_trace_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("servicekit.outbox")


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
        batch_size: int = 200,
        idle_interval: float = 0.5,
        max_backoff: float = 5.0,
    ) -> None:
        self._engine = engine
        self._table = table
        self._js = js
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
            rows = (
                await conn.execute(
                    select(table.c.id, table.c.subject, table.c.msg_id, table.c.payload, table.c.headers)
                    .where(table.c.published_at.is_(None))
                    .order_by(table.c.id)
                    .limit(self._batch_size)
                )
            ).all()
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
        if failure is not None:
            raise failure
        return len(done)

    async def _publish_row(self, row: Any) -> None:
        headers: dict[str, str] = dict(row.headers or {})
        with _tracer.start_as_current_span(
            f"publish {row.subject}", context=context_from_headers(headers), kind=trace.SpanKind.PRODUCER
        ):
            await publish(
                self._js, row.subject, row.payload, msg_id=row.msg_id, headers=inject_trace_headers()
            )
