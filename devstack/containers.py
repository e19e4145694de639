"""The same three servers as Docker containers, through testcontainers, where a Docker engine runs.

`local_infrastructure` prefers these when a Docker engine answers (unless
VIDFLOW_LOCAL_SERVERS=packages) and otherwise starts the servers shipped as Python packages.
Images are pinned to what production runs: PostgreSQL 16, NATS 2.10 with JetStream, MinIO.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

POSTGRES_IMAGE = "postgres:16-alpine"
NATS_IMAGE = "nats:2.10-alpine"
MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"


def docker_engine_available() -> bool:
    """True only when an engine answers a ping within two seconds; a bare CLI does not count."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def postgres_container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(
        POSTGRES_IMAGE, username="vidflow", password="vidflow", dbname="vidflow", driver=None
    ) as pg:
        yield pg.get_connection_url()


@contextlib.contextmanager
def nats_container() -> Iterator[str]:
    from testcontainers.community.nats import NatsContainer

    with NatsContainer(NATS_IMAGE, jetstream=True) as nats:
        yield nats.nats_uri()


@contextlib.contextmanager
def minio_container() -> Iterator[tuple[str, str, str]]:
    """Yield (endpoint URL, access key, secret key)."""
    from testcontainers.community.minio import MinioContainer

    secret = secrets.token_urlsafe(24)
    with MinioContainer(MINIO_IMAGE, access_key="vidflow", secret_key=secret) as minio:
        config = minio.get_config()
        yield f"http://{config['endpoint']}", config["access_key"], config["secret_key"]
