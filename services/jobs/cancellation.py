"""Cancelling a job: it ends `failed` with code `cancelled`, and its credit hold is released.

A job can be cancelled until it starts settling: once the renderer has stored the video and
billing is capturing, the video exists and is paid for. The provider may already be working on
it; the OpenAI Videos API has no cancel, so its video is left to finish or expire unseen.
"""

from __future__ import annotations

from collections.abc import Callable

from servicekit.errors import ErrorKind, ServiceError

from services.jobs.domain.job import Job, JobError
from services.jobs.domain.lifecycle import Stage
from services.jobs.store import Changes, JobStore, StaleJob

CANCELLED = JobError("cancelled", "The video was cancelled before it finished; nothing was charged.")
_CANCELLABLE = (
    Stage.QUEUED,
    Stage.SUBMITTING,
    Stage.GENERATING,
    Stage.DOWNLOADING,
    Stage.RENDERING,
)
# A worker may move the job while we try; a few re-reads settle who wins.
_ATTEMPTS = 5


class Cancellation:
    def __init__(self, store: JobStore, on_cancelled: Callable[[], None]) -> None:
        self._store = store
        self._on_cancelled = on_cancelled

    async def cancel(self, *, owner_id: str, job_id: str) -> Job:
        for _ in range(_ATTEMPTS):
            job = await self._store.get_owned(job_id, owner_id)
            if job.error == CANCELLED and job.stage in (Stage.RELEASING, Stage.FAILED):
                return job  # already cancelled: cancelling again is a no-op
            if job.stage not in _CANCELLABLE:
                raise ServiceError(
                    ErrorKind.FAILED_PRECONDITION,
                    f"Video {job_id} can no longer be cancelled (it is {job.status.value}).",
                    param="video_id",
                    code="video_not_cancellable",
                )
            try:
                cancelled = await self._store.move(job, Stage.RELEASING, Changes(error=CANCELLED))
            except StaleJob:
                continue
            self._on_cancelled()  # the worker releases the hold and ends the job
            return cancelled
        raise ServiceError(
            ErrorKind.ABORTED, "The video changed while cancelling; try again.", code="conflict"
        )
