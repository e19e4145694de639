"""S3-compatible object storage through the minio SDK (MinIO in Kubernetes, SeaweedFS locally)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # http(s)://host:port
    access_key: str
    secret_key: str
    region: str
    bucket: str


def make_s3_client(settings: S3Settings) -> Minio:
    parsed = urlparse(settings.endpoint)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError("S3_ENDPOINT must be an http(s)://host:port URL")
    return Minio(
        parsed.netloc,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        region=settings.region,
        secure=parsed.scheme == "https",
    )


async def ensure_bucket(client: Minio, bucket: str) -> None:
    def _ensure() -> None:
        try:
            if not client.bucket_exists(bucket_name=bucket):
                client.make_bucket(bucket_name=bucket)
        except S3Error as exc:
            # Another replica may have created it between the check and the create.
            if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    await asyncio.to_thread(_ensure)
