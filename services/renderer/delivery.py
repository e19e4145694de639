"""GetAssetUrl: short-lived signed download URLs for an owner's stored assets.

ListRenditions signs every rung and the HLS master playlist the same way. The segments and
variant playlists an HLS player fetches next are not signed here: serve them through a CDN or
proxy that signs per request (a presigned master cannot carry signatures for what it lists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain import AssetVariant, StoredAsset, require_id
from services.renderer.domain.renditions import RenditionRecord
from services.renderer.media_store import MediaStore
from services.renderer.store import AssetStore, RenditionStore


@dataclass(frozen=True)
class SignedRenditions:
    renditions: list[tuple[RenditionRecord, str]]
    hls_master_url: str
    expire_time: datetime


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expire_time: datetime
    asset: StoredAsset


class AssetUrls:
    def __init__(
        self,
        media: MediaStore,
        assets: AssetStore,
        renditions: RenditionStore,
        *,
        ttl_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._media = media
        self._assets = assets
        self._renditions = renditions
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock

    async def url_for(self, *, owner_id: str, job_id: str, variant: AssetVariant) -> SignedUrl:
        require_id(owner_id, "owner_id")
        require_id(job_id, "job_id")
        # Scoped by owner: someone else's job looks exactly like one that does not exist.
        asset = await self._assets.get(owner_id=owner_id, job_id=job_id, variant=variant)
        if asset is None:
            raise ServiceError(
                ErrorKind.NOT_FOUND,
                f"no {variant.value} found for job {job_id}",
                param="job_id",
                code="asset_not_found",
            )
        signed_at = self._clock().replace(microsecond=0)
        url = await self._media.presigned_get_url(asset.object_key, self._ttl, signed_at)
        return SignedUrl(url=url, expire_time=signed_at + self._ttl, asset=asset)

    async def renditions_for(self, *, owner_id: str, job_id: str) -> SignedRenditions:
        require_id(owner_id, "owner_id")
        require_id(job_id, "job_id")
        video = await self._assets.get(owner_id=owner_id, job_id=job_id, variant=AssetVariant.VIDEO)
        if video is None:
            raise ServiceError(
                ErrorKind.NOT_FOUND,
                f"no video found for job {job_id}",
                param="job_id",
                code="asset_not_found",
            )
        records = await self._renditions.for_job(owner_id=owner_id, job_id=job_id)
        signed_at = self._clock().replace(microsecond=0)
        signed = [
            (record, await self._media.presigned_get_url(record.object_key, self._ttl, signed_at))
            for record in records
        ]
        master = next((r.hls_master_key for r in records if r.hls_master_key), None)
        master_url = await self._media.presigned_get_url(master, self._ttl, signed_at) if master else ""
        return SignedRenditions(signed, master_url, signed_at + self._ttl)
