"""PrepareReferences: check, decode and normalise a job's reference images, and keep them 24 hours.

Order makes retries safe and leaves nothing the sweeper cannot find: every image is checked
and prepared first (nothing is written if one is bad), then the rows are recorded (with their
expiry), then the objects are written. A crash after the rows leaves rows whose objects may be
missing, which the sweeper deletes harmlessly; a retry (same job, same indexes) overwrites both.

Expiry has two layers: a bucket lifecycle rule on `references/` where the store accepts one,
and `ReferenceSweeper`, which deletes expired rows and their objects on every replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain import require_id
from services.renderer.domain.references import (
    Fit,
    Limits,
    StoredReference,
    check_count,
    parse_target_size,
    reference_key,
)
from services.renderer.media_store import MediaStore
from services.renderer.reference_images import prepare_image
from services.renderer.store import ReferenceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceUpload:
    data: bytes
    declared_content_type: str = ""
    filename: str = ""


class ReferencePreparer:
    def __init__(
        self,
        media: MediaStore,
        store: ReferenceStore,
        limits: Limits,
        *,
        max_concurrent_decodes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._media = media
        self._store = store
        self._limits = limits
        # A 40-megapixel decode holds ~160 MB; this bounds how many run at once per replica.
        self._decodes = asyncio.Semaphore(max_concurrent_decodes)
        self._clock = clock

    async def prepare(
        self,
        *,
        job_id: str,
        owner_id: str,
        images: Sequence[ReferenceUpload],
        target_size: str,
        fit: Fit,
    ) -> list[StoredReference]:
        require_id(job_id, "job_id")
        require_id(owner_id, "owner_id")
        check_count(len(images))
        target = parse_target_size(target_size)
        prepared = []
        # One at a time within a request: the first bad image answers, and memory stays bounded.
        for index, upload in enumerate(images):
            async with self._decodes:
                prepared.append(
                    await asyncio.to_thread(
                        prepare_image,
                        index,
                        upload.data,
                        upload.declared_content_type,
                        target,
                        fit,
                        self._limits,
                    )
                )
        created_at = self._clock()
        stored = [
            StoredReference(
                image=image,
                owner_id=owner_id,
                job_id=job_id,
                object_key=reference_key(owner_id, job_id, image.index),
                created_at=created_at,
            )
            for image in prepared
        ]
        if not await self._store.record(stored):
            raise ServiceError(
                ErrorKind.ALREADY_EXISTS,
                "this job's reference images belong to another owner",
                param="job_id",
                code="job_owned_by_another",
            )
        await asyncio.gather(
            *(self._media.put(ref.object_key, ref.image.data, ref.image.content_type) for ref in stored)
        )
        log.info("references prepared", extra={"job_id": job_id, "count": len(stored)})
        return stored


class ReferenceSweeper:
    """Deletes expired reference rows and their objects; safe to run on every replica at once."""

    def __init__(
        self,
        media: MediaStore,
        store: ReferenceStore,
        *,
        batch_size: int = 100,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._media = media
        self._store = store
        self._batch_size = batch_size
        self._clock = clock

    async def sweep(self, now: datetime | None = None) -> int:
        """Everything expired at `now` (default: the clock); returns how many images were removed."""
        at = now if now is not None else self._clock()
        removed = 0
        while True:
            count = await self._store.sweep_batch(at, self._batch_size, self._media.delete)
            removed += count
            if count < self._batch_size:
                return removed

    async def run(self, interval_seconds: float) -> None:
        """Sweep every `interval_seconds` until cancelled; a failed pass is logged and retried."""
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("expired references removed", extra={"count": removed})
            except Exception:
                log.exception("reference sweep failed; retrying next interval")
            await asyncio.sleep(interval_seconds)
