"""Moderation decisions in PostgreSQL (schema `moderation`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, func
from sqlalchemy.ext.asyncio import AsyncEngine

from services.moderation.domain import Decision

SCHEMA = "moderation"
metadata = MetaData(schema=SCHEMA)

decisions = Table(
    "decisions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("owner_id", String(64), nullable=False),
    Column("subject", String(16), nullable=False),  # "prompt" now; "image" with reference images
    Column("verdict", String(16), nullable=False),
    Column("category", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class StoredDecision:
    id: str
    job_id: str
    decision: Decision
    decided_at: datetime


class DecisionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, *, job_id: str, owner_id: str, subject: str, decision: Decision) -> StoredDecision:
        decision_id = f"mod_{uuid.uuid4().hex}"
        async with self._engine.begin() as conn:
            decided_at = await conn.scalar(
                decisions.insert()
                .values(
                    id=decision_id,
                    job_id=job_id,
                    owner_id=owner_id,
                    subject=subject,
                    verdict="approved" if decision.approved else "rejected",
                    category=decision.category,
                    reason=decision.reason,
                )
                .returning(decisions.c.decided_at)
            )
        return StoredDecision(decision_id, job_id, decision, decided_at)
