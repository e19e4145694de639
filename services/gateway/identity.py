"""Users and API keys (schema `gateway`). Keys are stored as SHA-256 digests, never in clear.

A fast hash is right here: keys are 32 random bytes, so there is nothing to brute-force,
and every request must look one up. Nothing is cached in the process: a revoked key fails on
the next request on every replica.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from servicekit.db import newest_first_page
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

SCHEMA = "gateway"
KEY_PREFIX = "vf_"
DEV_USER_ID = "user_dev"
ROLES = ("user", "admin")
DISPLAY_PREFIX_CHARS = 8
# last_used_at is a hint for people, not an audit log: one write per key per minute at most.
LAST_USED_RESOLUTION = timedelta(minutes=1)
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("id", String(20), nullable=False, unique=True),
    Column("user_id", String(64), ForeignKey(users.c.id), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("display_prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("requests_per_minute", Integer),
    Column("max_concurrent_jobs", Integer, nullable=False, server_default="0"),
)


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    # Public and stable: budgets and logs name keys by this, never by the key itself.
    api_key_id: str = ""
    # None: the gateway's default; 0: unlimited.
    requests_per_minute: int | None = None
    max_concurrent_jobs: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class KeyLimits:
    requests_per_minute: int | None = None
    max_concurrent_jobs: int = 0


class Unset(enum.Enum):
    """Marks an argument left out, where None is a value."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: str
    name: str
    display_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    limits: KeyLimits


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id_of(key_hash: str) -> str:
    return f"key_{key_hash[:16]}"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_user_id() -> str:
    return f"user_{secrets.token_hex(12)}"


def _api_key(row: Any) -> ApiKey:
    """From a row of _KEY_COLUMNS."""
    return ApiKey(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        display_prefix=row.display_prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        limits=KeyLimits(row.requests_per_minute, row.max_concurrent_jobs),
    )


_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.user_id,
    api_keys.c.name,
    api_keys.c.display_prefix,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
    api_keys.c.requests_per_minute,
    api_keys.c.max_concurrent_jobs,
)


class IdentityStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def authenticate(self, api_key: str) -> Principal | None:
        key_hash = hash_key(api_key)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        users.c.id,
                        users.c.role,
                        api_keys.c.id.label("key_id"),
                        api_keys.c.requests_per_minute,
                        api_keys.c.max_concurrent_jobs,
                        func.coalesce(
                            api_keys.c.last_used_at < func.now() - LAST_USED_RESOLUTION, True
                        ).label("touch_due"),
                    )
                    .join(api_keys, api_keys.c.user_id == users.c.id)
                    .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
                )
            ).one_or_none()
            if row is None:
                return None
            if row.touch_due:
                await conn.execute(
                    update(api_keys).where(api_keys.c.key_hash == key_hash).values(last_used_at=func.now())
                )
                await conn.commit()
        return Principal(row.id, row.role, row.key_id, row.requests_per_minute, row.max_concurrent_jobs)

    async def ensure_user_with_key(self, *, user_id: str, name: str, role: str, api_key: str) -> None:
        """For the dev stack and tests: the user and this exact key exist afterwards."""
        key_hash = hash_key(api_key)
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(users).values(id=user_id, name=name, role=role).on_conflict_do_nothing()
            )
            await conn.execute(
                insert(api_keys)
                .values(
                    key_hash=key_hash,
                    id=key_id_of(key_hash),
                    user_id=user_id,
                    display_prefix=api_key[:DISPLAY_PREFIX_CHARS],
                )
                .on_conflict_do_nothing()
            )

    async def ensure_user(self, *, user_id: str, name: str, role: str) -> None:
        """Provision a user seen for the first time (a JWT subject); its role follows the token."""
        statement = (
            insert(users)
            .values(id=user_id, name=name, role=role)
            .on_conflict_do_update(
                index_elements=[users.c.id],
                set_={"role": role},
                where=users.c.role != role,
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def create_user(self, *, name: str, role: str, user_id: str | None = None) -> User | None:
        """The new user, or None when `user_id` is taken."""
        try:
            async with self._engine.begin() as conn:
                row = (
                    await conn.execute(
                        insert(users)
                        .values(id=user_id or new_user_id(), name=name, role=role)
                        .returning(users.c.id, users.c.name, users.c.role, users.c.created_at)
                    )
                ).one()
        except IntegrityError:
            return None
        return User(row.id, row.name, row.role, row.created_at)

    async def get_user(self, user_id: str) -> User | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users.c.id, users.c.name, users.c.role, users.c.created_at).where(
                        users.c.id == user_id
                    )
                )
            ).one_or_none()
        return User(row.id, row.name, row.role, row.created_at) if row else None

    async def list_users(self, *, limit: int, after: str | None) -> list[User]:
        """Users ordered by id, `limit` of them after the id `after`."""
        statement = select(users.c.id, users.c.name, users.c.role, users.c.created_at).order_by(users.c.id)
        if after:
            statement = statement.where(users.c.id > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement.limit(limit))).all()
        return [User(row.id, row.name, row.role, row.created_at) for row in rows]

    async def create_api_key(self, *, user_id: str, name: str, limits: KeyLimits) -> tuple[ApiKey, str]:
        """A new key for an existing user: the record, and the secret (shown this once only)."""
        secret = new_api_key()
        key_hash = hash_key(secret)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    insert(api_keys)
                    .values(
                        key_hash=key_hash,
                        id=key_id_of(key_hash),
                        user_id=user_id,
                        name=name,
                        display_prefix=secret[:DISPLAY_PREFIX_CHARS],
                        requests_per_minute=limits.requests_per_minute,
                        max_concurrent_jobs=limits.max_concurrent_jobs,
                    )
                    .returning(*_KEY_COLUMNS)
                )
            ).one()
        return _api_key(row), secret

    async def count_active_keys(self, user_id: str) -> int:
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(api_keys)
                .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
            )
        return int(count or 0)

    async def list_api_keys(self, user_id: str, *, limit: int, after: str | None) -> list[ApiKey]:
        """The user's keys, revoked ones included, newest first; `after` is the last key id seen."""
        statement = newest_first_page(
            select(*_KEY_COLUMNS), api_keys, scope=api_keys.c.user_id == user_id, limit=limit, after=after
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [_api_key(row) for row in rows]

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.id == key_id))).one_or_none()
        return _api_key(row) if row else None

    async def revoke_api_key(self, key_id: str, *, owner_id: str | None = None) -> ApiKey | None:
        """Revoke the key (once: a second revoke keeps the first time). None when there is no such
        key, or, with `owner_id`, when it belongs to someone else."""
        conditions = [api_keys.c.id == key_id]
        if owner_id is not None:
            conditions.append(api_keys.c.user_id == owner_id)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    update(api_keys)
                    .where(*conditions)
                    .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
                    .returning(*_KEY_COLUMNS)
                )
            ).one_or_none()
        return _api_key(row) if row else None

    async def set_limits(
        self,
        key_id: str,
        *,
        requests_per_minute: int | Unset | None = UNSET,
        max_concurrent_jobs: int | Unset = UNSET,
    ) -> ApiKey | None:
        """Change the limits given (None for requests_per_minute: back to the gateway's default)."""
        changes: dict[str, int | None] = {}
        if not isinstance(requests_per_minute, Unset):
            changes["requests_per_minute"] = requests_per_minute
        if not isinstance(max_concurrent_jobs, Unset):
            changes["max_concurrent_jobs"] = max_concurrent_jobs
        if not changes:
            return await self.get_api_key(key_id)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    update(api_keys).where(api_keys.c.id == key_id).values(changes).returning(*_KEY_COLUMNS)
                )
            ).one_or_none()
        return _api_key(row) if row else None
