"""The media bucket as the jobs service uses it: provider files wait in staging until the renderer
ingests them, and prepared reference images are read back to send to the provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

from minio import Minio

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


def staging_key(job_id: str, filename: str) -> str:
    return f"staging/{job_id}/{filename}"


class StagingArea:
    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def upload(self, job_id: str, path: Path) -> str:
        key = staging_key(job_id, path.name)
        await asyncio.to_thread(
            self._client.fput_object,
            bucket_name=self._bucket,
            object_name=key,
            file_path=str(path),
            content_type=_CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        )
        return key

    async def read(self, key: str) -> bytes:
        def _read() -> bytes:
            response = self._client.get_object(bucket_name=self._bucket, object_name=key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(_read)
