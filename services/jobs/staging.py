"""The media bucket as the jobs service uses it: provider files wait in staging until the renderer
ingests them, and prepared reference images are read back to send to the provider."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


def content_type_of(key: str) -> str:
    """The media type our own object keys imply by their extension."""
    return _CONTENT_TYPES.get("." + key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


STAGING_PREFIX = "staging/"


def staging_key(job_id: str, filename: str) -> str:
    return f"{STAGING_PREFIX}{job_id}/{filename}"


def segment_staging_key(job_id: str, index: int) -> str:
    """Where the finished clip `index` of a long video waits to be stitched."""
    return staging_key(job_id, f"segment-{index}.mp4")


class StagingArea:
    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def upload(self, job_id: str, path: Path) -> str:
        key = staging_key(job_id, path.name)
        await self.upload_as(key, path)
        return key

    async def upload_as(self, key: str, path: Path) -> None:
        await asyncio.to_thread(
            self._client.fput_object,
            bucket_name=self._bucket,
            object_name=key,
            file_path=str(path),
            content_type=content_type_of(key),
        )

    async def exists(self, key: str) -> bool:
        def _stat() -> bool:
            try:
                self._client.stat_object(bucket_name=self._bucket, object_name=key)
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return False
                raise
            return True

        return await asyncio.to_thread(_stat)

    async def jobs_staged_before(self, cutoff: datetime) -> list[str]:
        """The jobs with at least one staged file last written before `cutoff`."""

        def _list() -> list[str]:
            jobs: set[str] = set()
            for item in self._client.list_objects(self._bucket, prefix=STAGING_PREFIX, recursive=True):
                name, modified = item.object_name or "", item.last_modified
                job_id = name.removeprefix(STAGING_PREFIX).split("/", 1)[0]
                if job_id and modified is not None and modified < cutoff:
                    jobs.add(job_id)
            return sorted(jobs)

        return await asyncio.to_thread(_list)

    async def delete_job(self, job_id: str) -> int:
        """Every staged file of a job; how many there were."""

        def _delete() -> int:
            keys = [
                item.object_name
                for item in self._client.list_objects(self._bucket, prefix=staging_key(job_id, ""))
                if item.object_name
            ]
            if keys:
                errors = list(self._client.remove_objects(self._bucket, [DeleteObject(key) for key in keys]))
                if errors:
                    raise RuntimeError(f"could not delete staged files: {errors[0]}")
            return len(keys)

        return await asyncio.to_thread(_delete)

    async def read(self, key: str) -> bytes:
        def _read() -> bytes:
            response = self._client.get_object(bucket_name=self._bucket, object_name=key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(_read)
