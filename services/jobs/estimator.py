"""Estimated completion times for jobs as the API returns them, from recent history (cached briefly:
it changes slowly and every GetJob would otherwise scan the latest completions)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from vidflow.jobs.v1 import jobs_pb2

from services.jobs.domain.estimates import Typical, estimate_completion
from services.jobs.domain.job import Job
from services.jobs.domain.routing import Registry
from services.jobs.store import JobStore
from services.jobs.translate import job_to_proto

_CACHE_SECONDS = 30.0


class Estimator:
    def __init__(self, store: JobStore, registry: Registry) -> None:
        self._store = store
        self._registry = registry
        self._typical = Typical({})
        self._fetched_at = float("-inf")

    async def to_proto(self, job: Job) -> jobs_pb2.Job:
        message = job_to_proto(job)
        if job.stage.is_terminal:
            return message
        typical = await self._current()
        slots = sum(
            self._registry.deployments[route.deployment].max_concurrent
            for route in self._registry.candidates(job.spec.model)
        )
        estimate = estimate_completion(job, typical, slots=slots, now=datetime.now(UTC))
        if estimate is not None:
            message.estimated_complete_time.FromDatetime(estimate)
        return message

    async def _current(self) -> Typical:
        if time.monotonic() - self._fetched_at > _CACHE_SECONDS:
            self._typical = Typical(await self._store.typical_durations())
            self._fetched_at = time.monotonic()
        return self._typical
