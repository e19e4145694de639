"""The staging area in object storage: provider files wait here until the renderer ingests them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from minio import Minio

_CONTENT_TYPES = {".mp4": "video/mp4", ".webp": "image/webp", ".jpg": "image/jpeg"}


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
