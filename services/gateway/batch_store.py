"""PostgreSQL adapter for video batches (schema `gateway`): the batch, and each item's outcome (the
video it made, or the error it got). The videos themselves live in the jobs service."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from servicekit.db import newest_first_page
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.gateway.identity import SCHEMA

BATCH_ID_PREFIX = "batch_"
metadata = MetaData(schema=SCHEMA)

video_batches = Table(
    "video_batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("idempotency_key", String(128)),
    Column("request_hash", String(64), nullable=False),
    Column("total", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("owner_id", "idempotency_key", name="video_batches_owner_key"),
)
video_batch_items = Table(
    "video_batch_items",
    metadata,
    Column("batch_id", String(40), ForeignKey(video_batches.c.id, ondelete="CASCADE"), primary_key=True),
    Column("item_index", Integer, primary_key=True),
    Column("video_id", String(128)),
    Column("error", JSONB(none_as_null=True)),
    CheckConstraint("(video_id IS NULL) <> (error IS NULL)", name="video_batch_items_one_outcome"),
)


@dataclass(frozen=True)
class Batch:
    id: str
    owner_id: str
    request_hash: str
    total: int
    created_at: datetime


@dataclass(frozen=True)
class ItemOutcome:
    """The video an item made, or (video_id None) the OpenAI error object it got."""

    video_id: str | None
    error: dict[str, Any] | None


_BATCH_COLUMNS = (
    video_batches.c.id,
    video_batches.c.owner_id,
    video_batches.c.request_hash,
    video_batches.c.total,
    video_batches.c.created_at,
)


def new_batch_id() -> str:
    return BATCH_ID_PREFIX + secrets.token_hex(12)


def _batch(row: Any) -> Batch:
    return Batch(row.id, row.owner_id, row.request_hash, row.total, row.created_at)


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def open(
        self, *, owner_id: str, idempotency_key: str | None, request_hash: str, total: int
    ) -> tuple[Batch, bool]:
        """A new batch, or the owner's batch with this idempotency key; True when new."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    insert(video_batches)
                    .values(
                        id=new_batch_id(),
                        owner_id=owner_id,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        total=total,
                    )
                    .on_conflict_do_nothing(constraint="video_batches_owner_key")
                    .returning(*_BATCH_COLUMNS)
                )
            ).one_or_none()
            if row is not None:
                return _batch(row), True
            existing = (
                await conn.execute(
                    select(*_BATCH_COLUMNS).where(
                        video_batches.c.owner_id == owner_id,
                        video_batches.c.idempotency_key == idempotency_key,
                    )
                )
            ).one()
        return _batch(existing), False

    async def get(self, owner_id: str, batch_id: str) -> Batch | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*_BATCH_COLUMNS).where(
                        video_batches.c.id == batch_id, video_batches.c.owner_id == owner_id
                    )
                )
            ).one_or_none()
        return _batch(row) if row else None

    async def list_batches(self, owner_id: str, *, limit: int, after: str | None) -> list[Batch]:
        """Newest first; `after` is the last batch id of the previous page."""
        statement = newest_first_page(
            select(*_BATCH_COLUMNS),
            video_batches,
            scope=video_batches.c.owner_id == owner_id,
            limit=limit,
            after=after,
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [_batch(row) for row in rows]

    async def outcomes(self, batch_id: str) -> dict[int, ItemOutcome]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        video_batch_items.c.item_index,
                        video_batch_items.c.video_id,
                        video_batch_items.c.error,
                    )
                    .where(video_batch_items.c.batch_id == batch_id)
                    .order_by(video_batch_items.c.item_index)
                )
            ).all()
        return {row.item_index: ItemOutcome(row.video_id, row.error) for row in rows}

    async def record(self, batch_id: str, index: int, outcome: ItemOutcome) -> None:
        """A replayed item may turn an earlier transient error into a video."""
        statement = insert(video_batch_items).values(
            batch_id=batch_id, item_index=index, video_id=outcome.video_id, error=outcome.error
        )
        statement = statement.on_conflict_do_update(
            index_elements=[video_batch_items.c.batch_id, video_batch_items.c.item_index],
            set_={"video_id": statement.excluded.video_id, "error": statement.excluded.error},
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
