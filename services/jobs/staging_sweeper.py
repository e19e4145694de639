"""Staged files nobody will use: the finished clips of a failed long video kept for a retry that
never came, and whatever a crash or a failed render left in `staging/`. Once a job has been
finished (completed or failed) for longer than the retention, or has no row at all, its staging
folder goes. Every replica sweeps; deleting twice is harmless. A retry after that makes every clip
again (it only keeps clips whose files are still there)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from servicekit.lifecycle import wait_for_signal

from services.jobs.staging import StagingArea
from services.jobs.store import JobStore

log = logging.getLogger(__name__)


class StagingSweeper:
    def __init__(
        self, store: JobStore, staging: StagingArea, *, retention: timedelta, interval_seconds: float
    ) -> None:
        self._store = store
        self._staging = staging
        self._retention = retention
        self._interval_seconds = interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                # Storage or the database is away: the files wait for the next round.
                log.warning("staging sweep failed", extra={"error": repr(exc)})
            await wait_for_signal(stop, seconds=self._interval_seconds)

    async def sweep(self) -> int:
        """One round; how many staged files it deleted."""
        cutoff = datetime.now(UTC) - self._retention
        folders = await self._staging.jobs_staged_before(cutoff)
        if not folders:
            return 0
        deleted = 0
        for job_id in await self._store.finished_or_gone(folders, finished_before=cutoff):
            deleted += await self._staging.delete_job(job_id)
        if deleted:
            log.info("staged files swept", extra={"objects": deleted})
        return deleted
