"""S3-compatible object storage through the minio SDK (MinIO in Kubernetes, SeaweedFS locally).

Every client waits a bounded time. minio's own HTTP client waits five minutes per socket operation
and tries six times, so a server that accepts connections and then never answers (a hung disk, a
network black hole, a stuck load balancer) held a render, a worker's lease and a gateway request
for up to half an hour. Here the waits come from `S3Timeouts` and the retries are few:

- connecting may take `connect_seconds`, and so may sending each request (urllib3 sends under the
  connect timeout; an upload goes in parts of at most 5 MiB), and each read of the answer may take
  `read_seconds`. A read timeout is about silence on the socket, not the length of a transfer, so
  large objects still stream in full;
- a refused or dropped connection and a 5xx answer are tried twice more after a short backoff; a
  read that timed out or broke off is tried once more, and only for requests safe to repeat. A hung
  server therefore costs a call at most about twice the read timeout before `storage_unavailable`
  turns the error into UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error, ServerError
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.exceptions import TimeoutError as HttpTimeoutError

from servicekit.config import ConfigError
from servicekit.errors import ErrorKind, ServiceError

STORAGE_UNAVAILABLE_MESSAGE = "Media storage is unavailable; try again shortly."
_RETRIES = urllib3.Retry(
    total=3,
    connect=2,
    read=1,  # urllib3 repeats only idempotent methods (GET, HEAD, PUT, DELETE) after a read error
    status=2,
    status_forcelist=(500, 502, 503, 504),
    backoff_factor=0.2,
    backoff_max=2.0,
    # urllib3 would otherwise honour a Retry-After of up to six hours.
    retry_after_max=2,
)
# Connections kept per host, as minio's own client keeps.
_POOL_SIZE = 10


@dataclass(frozen=True)
class S3Timeouts:
    """How long an S3 client waits for a connection (and for each send of a request), and for each
    read of an answer; the gateway reads presigned URLs with the same two."""

    connect_seconds: float = 5.0
    read_seconds: float = 20.0

    def __post_init__(self) -> None:
        if min(self.connect_seconds, self.read_seconds) <= 0:
            raise ConfigError("S3 timeouts (S3_CONNECT_TIMEOUT_SECONDS, S3_READ_TIMEOUT_SECONDS) must be > 0")


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # http(s)://host:port
    access_key: str
    secret_key: str
    region: str
    bucket: str
    timeouts: S3Timeouts = field(default_factory=S3Timeouts)


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
        http_client=_http_client(settings.timeouts),
    )


def _http_client(timeouts: S3Timeouts) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeouts.connect_seconds, read=timeouts.read_seconds),
        retries=_RETRIES,
        maxsize=_POOL_SIZE,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
    )


def storage_unavailable(exc: BaseException) -> ServiceError | None:
    """What a caller should see when `exc` (or its cause) says S3 could not be reached, stopped
    answering, broke off an answer or kept failing with 5xx: UNAVAILABLE (503, worth retrying)
    rather than an internal error. None for any other exception, S3's own refusals (no such key,
    access denied) included."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MaxRetryError | HttpTimeoutError | ProtocolError) or _server_failed(cause):
            return storage_unavailable_error()
        cause = cause.__cause__
    return None


def storage_unavailable_error() -> ServiceError:
    return ServiceError(ErrorKind.UNAVAILABLE, STORAGE_UNAVAILABLE_MESSAGE, code="service_unavailable")


def _server_failed(exc: BaseException) -> bool:
    """A 5xx answer that got past the retries (a POST is never repeated)."""
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    return isinstance(exc, S3Error) and exc.response is not None and exc.response.status >= 500


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
