"""Retrying a failed job: it is admitted again (credits held anew under a fresh hold key), and a long
video keeps the clips it already finished, so only the failed clip and those after it are made again.

The move back to ADMITTING comes before the hold, so a crash in between leaves an admitting job
that the worker finishes (holding credits once, by the hold key), never a hold without a job.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from servicekit.errors import ErrorKind, ServiceError

from services.jobs.admission import Admission
from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.segments import (
    SegmentStatus,
    first_unfinished,
    overall_progress,
    reset_for_retry,
)
from services.jobs.staging import StagingArea, segment_staging_key
from services.jobs.store import Changes, JobStore, StaleJob

log = logging.getLogger(__name__)
# Failures that trying again cannot change.
NOT_RETRYABLE = frozenset({"moderation_blocked"})
# Failures of our own processing of the clips: a retry makes them all again.
CLIPS_SUSPECT = frozenset({"invalid_provider_asset", "render_failed", "asset_expired"})
# Refusals that leave the job failed as it was.
_REFUSALS = (ErrorKind.INSUFFICIENT_QUOTA, ErrorKind.INVALID_ARGUMENT, ErrorKind.PERMISSION_DENIED)


class Retries:
    def __init__(self, store: JobStore, admission: Admission, staging: StagingArea) -> None:
        self._store = store
        self._admission = admission
        self._staging = staging

    async def retry(self, *, owner_id: str, job_id: str) -> Job:
        job = await self._store.get_owned(job_id, owner_id)
        self._check_retryable(job)
        for key in job.reference_keys:
            if not await self._staging.exists(key):
                raise ServiceError(
                    ErrorKind.FAILED_PRECONDITION,
                    "The reference images of this video were kept for 24 hours and are gone; "
                    "create a new video with them instead.",
                    param="video_id",
                    code="references_expired",
                )
        changes = await self._fresh_start(job)
        try:
            admitting = await self._store.move(job, Stage.ADMITTING, changes)
        except StaleJob:
            # A concurrent retry won; answer with the job as it is now.
            return await self._store.get_owned(job_id, owner_id)
        log.info("job retried", extra={"job_id": job.id, "retry": admitting.retry_count})
        try:
            return await self._admission.admit(admitting)
        except ServiceError as error:
            if error.kind not in _REFUSALS:
                # Passing trouble: the job stays admitting and the worker finishes its admission.
                log.warning("retry admission deferred", extra={"job_id": job.id, "error": error.message})
                return admitting
            # Refused (no money, say): the job stays failed as it was, and the client is told why.
            await self._store.move(admitting, Stage.FAILED, Changes(error=job.error))
            raise

    @staticmethod
    def _check_retryable(job: Job) -> None:
        if job.stage is not Stage.FAILED:
            raise ServiceError(
                ErrorKind.FAILED_PRECONDITION,
                f"Only failed videos can be retried; video {job.id} is {job.status.value}.",
                param="video_id",
                code="video_not_failed",
            )
        if job.error and job.error.code in NOT_RETRYABLE:
            raise ServiceError(
                ErrorKind.FAILED_PRECONDITION,
                f"Video {job.id} failed with {job.error.code}; trying again would fail the same way.",
                param="video_id",
                code="video_not_retryable",
            )

    async def _fresh_start(self, job: Job) -> Changes:
        now = datetime.now(UTC)
        if not job.segments:
            return Changes(retry_at=now, progress=0)
        # The finished clips from the start, while their files last: each later clip continues
        # from the one before, so a clip after a gap is made again too.
        kept: set[int] = set()
        if not (job.error and job.error.code in CLIPS_SUSPECT):
            for segment in job.segments:
                if segment.status is not SegmentStatus.COMPLETED or not await self._staging.exists(
                    segment_staging_key(job.id, segment.index)
                ):
                    break
                kept.add(segment.index)
        segments = reset_for_retry(job.segments, kept)
        return Changes(
            retry_at=now,
            segments=segments,
            segment_index=first_unfinished(segments),
            progress=overall_progress(segments),
        )
