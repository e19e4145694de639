"""Fixtures for every test directory: real PostgreSQL, NATS JetStream and S3, isolated by uuid.

The servers start once per session, and only when a test asks for `infrastructure` (directly or
through the fixtures below), so pure unit tests never start anything. DATABASE_URL, NATS_URL and
S3_ENDPOINT (+ S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION) point the tests at existing servers instead.
Tests never rely on ordering: each one gets its own database, bucket or stream names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject

from devstack.servers import Infrastructure, S3Endpoint, local_infrastructure, s3_client


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    """PostgreSQL, NATS and S3 endpoints for the whole session; local servers stop at the end."""
    with local_infrastructure(tmp_path_factory.mktemp("devstack")) as started:
        yield started


@pytest.fixture
def fresh_database_url(infrastructure: Infrastructure) -> Iterator[str]:
    """URL of a new, empty, uuid-named database, dropped after the test.

    Function-scoped: a database costs a few milliseconds with fsync off, and a test that wants to
    share one across a module can wrap this in its own module-scoped fixture.
    """
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(infrastructure.database_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(infrastructure.database_url, name)
    with psycopg.connect(infrastructure.database_url, autocommit=True, connect_timeout=10) as admin:
        # A pool left open by the code under test would otherwise make DROP DATABASE fail.
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3(infrastructure: Infrastructure) -> Minio:
    """A minio client for the session's S3 endpoint."""
    return s3_client(
        S3Endpoint(
            endpoint=infrastructure.s3_endpoint,
            access_key=infrastructure.s3_access_key,
            secret_key=infrastructure.s3_secret_key,
            region=infrastructure.s3_region,
        )
    )


@pytest.fixture
def s3_bucket(s3: Minio) -> Iterator[str]:
    """Name of a new uuid-named bucket; emptied and removed after the test."""
    name = f"test-{uuid.uuid4().hex}"
    s3.make_bucket(name)
    yield name
    leftovers = [DeleteObject(item.object_name) for item in s3.list_objects(name, recursive=True)]
    failures = list(s3.remove_objects(name, leftovers))
    assert not failures, f"could not empty bucket {name}: {failures}"
    s3.remove_bucket(name)


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make names no other test uses, e.g. `unique_name("JOBS")` for a stream, or a subject prefix.

    The result (`PREFIX_<32 hex>`) is valid both as a NATS stream name and as a subject token.
    """

    def make(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex}"

    return make


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))
