"""Deleting a video: its stored assets first, then the job, so a failure halfway leaves a job the
client can delete again rather than an orphaned file nobody can reach."""

from __future__ import annotations

import logging

from servicekit.errors import ErrorKind, ServiceError

from services.jobs.peers import RendererClient
from services.jobs.staging import StagingArea
from services.jobs.store import JobStore

log = logging.getLogger(__name__)


class Deletion:
    def __init__(self, store: JobStore, renderer: RendererClient, staging: StagingArea) -> None:
        self._store = store
        self._renderer = renderer
        self._staging = staging

    async def delete(self, *, owner_id: str, job_id: str) -> None:
        job = await self._store.get_owned(job_id, owner_id)
        if not job.stage.is_terminal:
            raise ServiceError(
                ErrorKind.FAILED_PRECONDITION,
                f"Video {job_id} is still {job.status.value}; cancel it first, then delete it.",
                param="video_id",
                code="video_not_finished",
            )
        deleted = await self._renderer.delete_assets(job_id=job.id, owner_id=job.owner_id)
        # A failed long video may leave finished clips staged for a retry.
        deleted += await self._staging.delete_job(job.id)
        await self._store.delete_finished(job)
        log.info("video deleted", extra={"job_id": job.id, "objects": deleted})
