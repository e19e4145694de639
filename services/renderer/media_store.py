"""The media bucket through the (blocking) minio SDK; every call runs in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


class MediaStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""

        def stat() -> int | None:
            try:
                return self._client.stat_object(bucket_name=self._bucket, object_name=key).size
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                raise

        return await asyncio.to_thread(stat)

    async def download(self, key: str, path: Path) -> bool:
        """Copy the object to `path`; False when there is no such object (any more)."""

        def fetch() -> bool:
            try:
                self._client.fget_object(bucket_name=self._bucket, object_name=key, file_path=str(path))
            except S3Error as exc:
                if exc.code in _MISSING:
                    return False
                raise
            return True

        return await asyncio.to_thread(fetch)

    async def upload(self, path: Path, key: str, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.fput_object,
            bucket_name=self._bucket,
            object_name=key,
            file_path=str(path),
            content_type=content_type,
        )

    async def delete(self, keys: Iterable[str]) -> None:
        def remove() -> None:
            targets = [DeleteObject(key) for key in keys]
            errors = list(self._client.remove_objects(bucket_name=self._bucket, delete_object_list=targets))
            if errors:
                raise RuntimeError(f"could not delete {len(errors)} object(s): {errors[0]}")

        await asyncio.to_thread(remove)

    async def presigned_get_url(self, key: str, ttl: timedelta, signed_at: datetime) -> str:
        # With the region configured the SDK signs locally; the thread guards against a lookup.
        return await asyncio.to_thread(
            self._client.presigned_get_object,
            bucket_name=self._bucket,
            object_name=key,
            expires=ttl,
            request_date=signed_at,
        )
