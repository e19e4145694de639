"""Per-deployment request budgets shared by every jobs-service replica: a token bucket in PostgreSQL.

Each provider request takes one token. The bucket holds a small burst and refills at
(budget - burst) per minute, so no 60-second window sees more than the budget, however many
replicas run.
"""

from __future__ import annotations

import asyncio
import random

from servicekit.token_bucket import TokenBuckets, bucket_table
from sqlalchemy.ext.asyncio import AsyncEngine

from services.jobs.domain.routing import Deployment
from services.jobs.store import metadata

provider_budgets = bucket_table("provider_budgets", metadata, "deployment")


def burst_size(deployment: Deployment) -> float:
    """Two seconds' worth of requests, and at least one."""
    return max(1.0, deployment.requests_per_minute / 30)


def refill_per_second(deployment: Deployment) -> float:
    """A full bucket plus a minute of refill stays within the per-minute budget."""
    return (deployment.requests_per_minute - burst_size(deployment)) / 60.0


class RequestBudget:
    def __init__(self, engine: AsyncEngine, deployment: Deployment) -> None:
        self._buckets = TokenBuckets(engine, provider_budgets, "deployment")
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
        take = await self._buckets.take(self._name, capacity=self._burst, per_second=self._rate)
        return take.taken
