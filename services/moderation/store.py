"""Moderation decisions in PostgreSQL (schema `moderation`).

One row per decision: `subject` is "prompt" (image_index -1), "image" (image_index = the image's
index) or "images" — the job's verdict over all its images, whose image_index is the first rejected
image, or -1 when all passed. A request's rows are written in one transaction and share its time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, func, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.moderation.domain import Decision

SCHEMA = "moderation"
PROMPT_INDEX = -1
metadata = MetaData(schema=SCHEMA)

decisions = Table(
    "decisions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("owner_id", String(64), nullable=False),
    Column("subject", String(16), nullable=False),  # "prompt" | "image" | "images"
    Column("image_index", Integer, nullable=False, server_default=text("-1")),
    Column("verdict", String(16), nullable=False),
    Column("category", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class StoredDecision:
    id: str
    job_id: str
    image_index: int
    decision: Decision
    decided_at: datetime


@dataclass(frozen=True)
class NewDecision:
    subject: str
    image_index: int
    decision: Decision


class DecisionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, *, job_id: str, owner_id: str, items: list[NewDecision]) -> list[StoredDecision]:
        ids = [f"mod_{uuid.uuid4().hex}" for _ in items]
        rows = [
            {
                "id": decision_id,
                "job_id": job_id,
                "owner_id": owner_id,
                "subject": item.subject,
                "image_index": item.image_index,
                "verdict": "approved" if item.decision.approved else "rejected",
                "category": item.decision.category,
                "reason": item.decision.reason,
            }
            for decision_id, item in zip(ids, items, strict=True)
        ]
        async with self._engine.begin() as conn:
            # now() is the transaction's start, so every row of one request has the same time.
            decided_at: datetime = (await conn.execute(func.now().select())).scalar_one()
            await conn.execute(decisions.insert(), [{**row, "decided_at": decided_at} for row in rows])
        return [
            StoredDecision(decision_id, job_id, item.image_index, item.decision, decided_at)
            for decision_id, item in zip(ids, items, strict=True)
        ]
