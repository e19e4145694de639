"""Provider webhooks, once the gateway has verified them: the first sign that a video finished,
so no poll is spent on it. Each event id counts once, however often the provider retries it."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from services.jobs.domain.job import JobError
from services.jobs.domain.lifecycle import Stage
from services.jobs.store import Changes, JobStore, StaleJob

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class ProviderEventIntake:
    def __init__(self, store: JobStore, on_applied: Callable[[], None]) -> None:
        self._store = store
        self._on_applied = on_applied

    async def record(self, *, deployment: str, event_id: str, event_type: str, upstream_id: str) -> Outcome:
        first_time, job = await self._store.record_provider_event(
            event_id=event_id, deployment=deployment, upstream_id=upstream_id, event_type=event_type
        )
        if not first_time:
            return Outcome.DUPLICATE
        if job is None or job.stage is not Stage.GENERATING:
            # Not ours, or a poll got there first: polling remains the source of truth.
            return Outcome.IGNORED
        try:
            if event_type == "video.completed":
                await self._store.move(job, Stage.DOWNLOADING, Changes(progress=100))
            elif event_type == "video.failed":
                failure = JobError(
                    "video_generation_failed", "The provider reported that generating the video failed."
                )
                await self._store.move(job, Stage.RELEASING, Changes(error=failure))
            else:
                return Outcome.IGNORED
        except StaleJob:
            return Outcome.IGNORED
        log.info("provider webhook applied", extra={"job_id": job.id, "event": event_type})
        self._on_applied()
        return Outcome.APPLIED
