"""IngestVideo: a provider's finished files, from staging into permanent, probed, recorded media.

Order makes retries safe: validate everything, upload every file permanently, record all rows
in one transaction, and only then delete the staging objects. A crash before the rows commit
leaves staging intact and the retry redoes (and overwrites) the uploads; a crash after leaves
rows, and the retry answers from them and finishes the clean-up.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain import (
    COMPANION_VARIANTS,
    VARIANTS,
    AssetVariant,
    Expectation,
    StoredAsset,
    check_staging_key,
    check_video,
    companion_staging_key,
    invalid_asset,
    media_key,
    parse_expectation,
    require_id,
)
from services.renderer.domain.assets import THUMBNAIL_WIDTH
from services.renderer.domain.renditions import RenditionRecord
from services.renderer.media_store import MediaStore
from services.renderer.probe import make_stills, probe_image, probe_video
from services.renderer.renditions import RenditionMaker, RenditionOptions
from services.renderer.stitching import stitch
from services.renderer.store import AssetStore

log = logging.getLogger(__name__)


class Ingestor:
    def __init__(
        self,
        media: MediaStore,
        assets: AssetStore,
        renditions: RenditionMaker,
        *,
        max_source_bytes: int,
        ffmpeg: str,
        stitch_timeout_seconds: float,
    ) -> None:
        self._media = media
        self._assets = assets
        self._renditions = renditions
        self._max_source_bytes = max_source_bytes
        self._ffmpeg = ffmpeg
        self._stitch_timeout = stitch_timeout_seconds

    async def ingest(
        self,
        *,
        job_id: str,
        owner_id: str,
        staging_key: str,
        expected_seconds: float,
        expected_size: str,
        options: RenditionOptions | None = None,
        segment_keys: Sequence[str] = (),
    ) -> tuple[StoredAsset, list[RenditionRecord]]:
        """The stored source, then its ladder. The ladder is made from the permanent source after
        the source's rows commit, so a crash mid-ladder is redone by a retry, which finds the
        source rows but no rendition rows."""
        video = await self._ingest_source(
            job_id=job_id,
            owner_id=owner_id,
            staging_key=staging_key,
            expected_seconds=expected_seconds,
            expected_size=expected_size,
            segment_keys=segment_keys,
        )
        return video, await self._renditions.ensure(video, options or RenditionOptions())

    async def _ingest_source(
        self,
        *,
        job_id: str,
        owner_id: str,
        staging_key: str,
        expected_seconds: float,
        expected_size: str,
        segment_keys: Sequence[str],
    ) -> StoredAsset:
        require_id(job_id, "job_id")
        require_id(owner_id, "owner_id")
        expected = parse_expectation(expected_seconds, expected_size)
        staging_key = check_staging_key(job_id, staging_key)
        clips = [check_staging_key(job_id, key) for key in segment_keys]

        existing = await self._assets.for_job(job_id)
        if existing:
            return await self._answer_from_rows(existing, owner_id, expected, staging_key, clips)

        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"renderer-{job_id}-"))
        try:
            prepared = await self._fetch_and_check(job_id, owner_id, staging_key, clips, expected, workdir)
            if prepared is None:
                # The staged video vanished mid-way: another replica may have just ingested it.
                existing = await self._assets.for_job(job_id)
                if existing:
                    return await self._answer_from_rows(existing, owner_id, expected, staging_key, clips)
                raise _no_staged_video(staging_key)
            for path, asset in prepared.values():
                await self._media.upload(path, asset.object_key, asset.content_type)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)

        stored = [
            replace(asset, probe=replace(asset.probe, readable_seconds=None))
            for _, asset in prepared.values()
        ]
        await self._assets.record(stored)
        log.info("ingested", extra={"job_id": job_id, "variants": [a.variant.value for a in stored]})
        # Answer from the rows, like a retry would: a concurrent ingest of the same job may have won.
        return await self._answer_from_rows(
            await self._assets.for_job(job_id), owner_id, expected, staging_key, clips
        )

    async def _fetch_and_check(
        self,
        job_id: str,
        owner_id: str,
        staging_key: str,
        clips: list[str],
        expected: Expectation,
        workdir: Path,
    ) -> dict[str, tuple[Path, StoredAsset]] | None:
        """Download and validate the staged files; keyed by staging key. None if the video is gone."""
        video_spec = VARIANTS[AssetVariant.VIDEO]
        video_path = workdir / video_spec.file_name
        if clips:
            if not await self._fetch_and_stitch(clips, video_path, workdir):
                return None
        else:
            await self._check_size(staging_key, "video", required=True)
            if not await self._media.download(staging_key, video_path):
                return None
        probe = await asyncio.to_thread(probe_video, video_path)
        check_video(probe, expected)
        prepared = {
            staging_key: (
                video_path,
                StoredAsset(
                    job_id,
                    owner_id,
                    AssetVariant.VIDEO,
                    media_key(owner_id, job_id, AssetVariant.VIDEO),
                    video_spec.content_type,
                    probe,
                ),
            )
        }
        for variant in COMPANION_VARIANTS:
            spec = VARIANTS[variant]
            key = companion_staging_key(staging_key, variant)
            if not await self._check_size(key, variant.value, required=False):
                continue
            path = workdir / spec.file_name
            if not await self._media.download(key, path):
                continue
            assert spec.image_format is not None
            image_probe = await asyncio.to_thread(probe_image, path, spec.image_format)
            prepared[key] = (
                path,
                StoredAsset(
                    job_id,
                    owner_id,
                    variant,
                    media_key(owner_id, job_id, variant),
                    spec.content_type,
                    image_probe,
                ),
            )
        await self._add_stills(job_id, owner_id, video_path, prepared, workdir)
        return prepared

    async def _fetch_and_stitch(self, clips: list[str], video_path: Path, workdir: Path) -> bool:
        """The clips of a long video, joined in order into `video_path`; False if one is gone."""
        paths = []
        for index, key in enumerate(clips):
            await self._check_size(key, f"clip {index}", required=True)
            path = workdir / f"clip-{index}.mp4"
            if not await self._media.download(key, path):
                return False
            paths.append(path)
        copied = await stitch(paths, video_path, ffmpeg=self._ffmpeg, timeout_seconds=self._stitch_timeout)
        log.info("clips stitched", extra={"clips": len(paths), "stream_copy": copied})
        return True

    async def _add_stills(
        self,
        job_id: str,
        owner_id: str,
        video_path: Path,
        prepared: dict[str, tuple[Path, StoredAsset]],
        workdir: Path,
    ) -> None:
        """Our own poster always, and a thumbnail when the provider sent none."""
        has_thumbnail = any(asset.variant is AssetVariant.THUMBNAIL for _, asset in prepared.values())
        made = [AssetVariant.POSTER] if has_thumbnail else [AssetVariant.POSTER, AssetVariant.THUMBNAIL]
        paths = {variant: workdir / f"made-{VARIANTS[variant].file_name}" for variant in made}
        await asyncio.to_thread(
            make_stills,
            video_path,
            paths[AssetVariant.POSTER],
            paths.get(AssetVariant.THUMBNAIL),
            THUMBNAIL_WIDTH,
        )
        for variant, path in paths.items():
            spec = VARIANTS[variant]
            assert spec.image_format is not None
            image_probe = await asyncio.to_thread(probe_image, path, spec.image_format)
            # Keyed apart from staging keys: these were never staged.
            prepared[f"made:{variant.value}"] = (
                path,
                StoredAsset(
                    job_id,
                    owner_id,
                    variant,
                    media_key(owner_id, job_id, variant),
                    spec.content_type,
                    image_probe,
                ),
            )

    async def _check_size(self, key: str, what: str, *, required: bool) -> bool:
        size = await self._media.size_of(key)
        if size is None:
            if required:
                raise _no_staged_video(key)
            return False
        if size > self._max_source_bytes:
            raise invalid_asset(
                f"the provider's {what} is {size} bytes, more than the {self._max_source_bytes}-byte limit"
            )
        return True

    async def _answer_from_rows(
        self,
        existing: list[StoredAsset],
        owner_id: str,
        expected: Expectation,
        staging_key: str,
        clips: list[str],
    ) -> StoredAsset:
        video = next((asset for asset in existing if asset.variant is AssetVariant.VIDEO), None)
        if video is None or video.owner_id != owner_id:
            raise ServiceError(
                ErrorKind.ALREADY_EXISTS,
                "this job was already ingested for another owner",
                param="job_id",
                code="job_answer_from_rows",
            )
        # A retry must ask for what was accepted; different expectations are a caller bug.
        check_video(video.probe, expected)
        # A crash between the row commit and the clean-up leaves staging objects; finish it.
        await self._media.delete(
            [staging_key, *clips, *(companion_staging_key(staging_key, v) for v in COMPANION_VARIANTS)]
        )
        return video


def _no_staged_video(key: str) -> ServiceError:
    return ServiceError(
        ErrorKind.NOT_FOUND,
        f"there is no staged video at {key}",
        param="staging_key",
        code="staging_object_missing",
    )
