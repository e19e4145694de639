"""The media bucket through the (blocking) minio SDK; every call runs in a worker thread."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

log = logging.getLogger(__name__)

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

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            bucket_name=self._bucket,
            object_name=key,
            data=io.BytesIO(data),
            length=len(data),
            content_type=content_type,
        )

    async def expire_prefix(self, prefix: str, *, days: int, rule_id: str) -> bool:
        """Have the store itself delete objects under `prefix` after `days`; False if it refuses.

        The bucket keeps its other lifecycle rules: ours is added or replaced by `rule_id`.
        Some S3 implementations (SeaweedFS among them) do not take lifecycle rules; callers
        must not rely on this alone.
        """

        def configure() -> None:
            current = self._client.get_bucket_lifecycle(bucket_name=self._bucket)
            others = [rule for rule in (current.rules if current else []) if rule.rule_id != rule_id]
            ours = Rule(
                ENABLED, rule_filter=Filter(prefix=prefix), rule_id=rule_id, expiration=Expiration(days=days)
            )
            self._client.set_bucket_lifecycle(
                bucket_name=self._bucket, config=LifecycleConfig([*others, ours])
            )

        try:
            await asyncio.to_thread(configure)
        except (MinioException, ValueError) as exc:
            log.warning(
                "the object store refused a lifecycle rule; the sweeper alone expires objects",
                extra={"prefix": prefix, "error": str(exc)},
            )
            return False
        return True

    async def delete(self, keys: Iterable[str]) -> None:
        def remove() -> None:
            targets = [DeleteObject(key) for key in keys]
            errors = list(self._client.remove_objects(bucket_name=self._bucket, delete_object_list=targets))
            if errors:
                raise RuntimeError(f"could not delete {len(errors)} object(s): {errors[0]}")

        await asyncio.to_thread(remove)

    async def list_keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` (recursive)."""

        def listing() -> list[str]:
            return [
                obj.object_name
                for obj in self._client.list_objects(bucket_name=self._bucket, prefix=prefix, recursive=True)
                if obj.object_name is not None
            ]

        return await asyncio.to_thread(listing)

    async def presigned_get_url(self, key: str, ttl: timedelta, signed_at: datetime) -> str:
        # With the region configured the SDK signs locally; the thread guards against a lookup.
        return await asyncio.to_thread(
            self._client.presigned_get_object,
            bucket_name=self._bucket,
            object_name=key,
            expires=ttl,
            request_date=signed_at,
        )
