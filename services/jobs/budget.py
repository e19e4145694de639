"""Per-deployment request budgets shared by every jobs-service replica: a token bucket in PostgreSQL.

Each provider request takes one token. The bucket holds a small burst and refills at
(budget - burst) per minute, so no 60-second window sees more than the budget, however many
replicas run.
"""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import Column, DateTime, Float, String, Table, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.jobs.domain.routing import Deployment
from services.jobs.store import metadata

provider_budgets = Table(
    "provider_budgets",
    metadata,
    Column("deployment", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refreshed_at", DateTime(timezone=True), nullable=False),
)


def burst_size(deployment: Deployment) -> float:
    """Two seconds' worth of requests, and at least one."""
    return max(1.0, deployment.requests_per_minute / 30)


def refill_per_second(deployment: Deployment) -> float:
    """A full bucket plus a minute of refill stays within the per-minute budget."""
    return (deployment.requests_per_minute - burst_size(deployment)) / 60.0


class RequestBudget:
    def __init__(self, engine: AsyncEngine, deployment: Deployment) -> None:
        self._engine = engine
        self._name = deployment.name
        self._burst = burst_size(deployment)
        self._rate = refill_per_second(deployment)

    async def acquire(self) -> None:
        """Wait until this deployment's budget allows one more request, then spend it."""
        while True:
            if await self._try_take():
                return
            # Waiting for tokens to refill is the point here; jitter keeps replicas from lining up.
            await asyncio.sleep((1.0 / self._rate) * random.uniform(0.5, 1.5))

    async def _try_take(self) -> bool:
        budgets = provider_budgets
        refilled = func.least(
            self._burst,
            budgets.c.tokens
            + func.extract("epoch", func.clock_timestamp() - budgets.c.refreshed_at) * self._rate,
        )
        statement = (
            insert(budgets)
            .values(deployment=self._name, tokens=self._burst - 1, refreshed_at=func.clock_timestamp())
            .on_conflict_do_update(
                index_elements=[budgets.c.deployment],
                set_={"tokens": refilled - 1, "refreshed_at": func.clock_timestamp()},
                where=refilled >= 1,
            )
            .returning(budgets.c.tokens)
        )
        # One statement, autocommitted: one round trip per provider request.
        async with self._engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return (await autocommit.scalar(statement)) is not None
