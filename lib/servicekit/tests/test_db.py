"""DATABASE_URL handling: any usual PostgreSQL spelling becomes the psycopg 3 driver."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import QueuePool

from servicekit.db import make_engine, sqlalchemy_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://vidflow:secret@db:5432/vidflow",
        "postgres://vidflow:secret@db:5432/vidflow",
        "postgresql+psycopg://vidflow:secret@db:5432/vidflow",
    ],
)
def test_postgres_urls_use_psycopg3(url: str) -> None:
    assert sqlalchemy_url(url) == "postgresql+psycopg://vidflow:secret@db:5432/vidflow"


def test_query_string_is_kept() -> None:
    assert (
        sqlalchemy_url("postgresql://u@h/d?sslmode=require&application_name=jobs")
        == "postgresql+psycopg://u@h/d?sslmode=require&application_name=jobs"
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/d",
        "sqlite:///vidflow.db",
        "postgresql+asyncpg://u@h/d",
        "http://postgresql://u@h/d",
        "",
    ],
)
def test_other_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        sqlalchemy_url(url)


async def test_make_engine_picks_the_driver_without_connecting() -> None:
    engine = make_engine("postgres://u:p@127.0.0.1:1/d", pool_size=3)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert isinstance(engine.pool, QueuePool) and engine.pool.size() == 3
    finally:
        await engine.dispose()
