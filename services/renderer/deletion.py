"""DeleteAssets: every stored object of an owner's job, and its rows.

Objects are found by listing the job's permanent prefix (`media/<owner>/<job>/`), not from the
rows, so files an interrupted ingest uploaded before recording anything go too. The prefix
carries the owner, which is what scopes the call: another owner's (or an unknown) job has
nothing under the caller's prefix and answers 0. Rows go first, so nothing is ever listed
whose object is gone; objects next. A failure part-way is finished by calling again.
"""

from __future__ import annotations

import logging

from services.renderer.domain import job_prefix, require_id
from services.renderer.media_store import MediaStore
from services.renderer.store import AssetStore

log = logging.getLogger(__name__)


class AssetDeleter:
    def __init__(self, media: MediaStore, assets: AssetStore) -> None:
        self._media = media
        self._assets = assets

    async def delete(self, *, owner_id: str, job_id: str) -> int:
        """How many objects were deleted; 0 for another owner's job, an unknown one, or a repeat."""
        require_id(owner_id, "owner_id")
        require_id(job_id, "job_id")
        rows = await self._assets.delete_job(owner_id=owner_id, job_id=job_id)
        keys = await self._media.list_keys(job_prefix(owner_id, job_id))
        if keys:
            await self._media.delete(keys)
        log.info("assets deleted", extra={"job_id": job_id, "objects": len(keys), "rows": rows})
        return len(keys)
