"""PostgreSQL through SQLAlchemy 2 async with psycopg 3, and Alembic migrations per service schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Select, Table, select, tuple_
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from servicekit.errors import ErrorKind, ServiceError

DATABASE_UNAVAILABLE_MESSAGE = "The service is briefly unavailable; please try again shortly."


def sqlalchemy_url(database_url: str) -> str:
    """Accept the usual `postgresql://` form and pick the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    # pre_ping lets services ride out a PostgreSQL restart without restarting themselves.
    return create_async_engine(
        sqlalchemy_url(database_url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def database_unavailable(exc: BaseException) -> ServiceError | None:
    """What a caller should see when `exc` (or its cause) says the database could not be reached or
    dropped the connection, as in a restart or failover: UNAVAILABLE (503, worth retrying) rather
    than an internal error. None for any other exception."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OperationalError) or (
            isinstance(cause, DBAPIError) and cause.connection_invalidated
        ):
            return ServiceError(
                ErrorKind.UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE, code="service_unavailable"
            )
        cause = cause.__cause__
    return None


def upgrade_schema(database_url: str, migrations_dir: Path, schema: str) -> None:
    """Run a service's Alembic migrations to head (blocking; call from a thread or a Job)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = sqlalchemy_url(database_url)
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def newest_first_page(
    statement: Select[Any], table: Table, *, scope: ColumnElement[bool], limit: int, after: str | None
) -> Select[Any]:
    """Keyset paging on the table's (created_at, id), newest first. `after` is the last id of the
    previous page, looked up within `scope`, so an id outside it (another owner's) gives an empty
    page rather than someone else's position."""
    statement = statement.where(scope).order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
    if after:
        cursor = select(table.c.created_at, table.c.id).where(table.c.id == after, scope).subquery()
        statement = statement.where(
            tuple_(table.c.created_at, table.c.id)
            < tuple_(select(cursor.c.created_at).scalar_subquery(), select(cursor.c.id).scalar_subquery())
        )
    return statement
