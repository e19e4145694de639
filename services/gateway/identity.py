"""Users and API keys (schema `gateway`). Keys are stored as SHA-256 digests, never in clear.

A fast hash is right here: keys are 32 random bytes, so there is nothing to brute-force,
and every request must look one up.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, String, Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

SCHEMA = "gateway"
KEY_PREFIX = "vf_"
DEV_USER_ID = "user_dev"
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
    Column("user_id", String(64), ForeignKey(users.c.id), nullable=False),
    Column("display_prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    # Public and stable: budgets and logs name keys by this, never by the key itself.
    api_key_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id_of(key_hash: str) -> str:
    return f"key_{key_hash[:16]}"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class IdentityStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def authenticate(self, api_key: str) -> Principal | None:
        key_hash = hash_key(api_key)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users.c.id, users.c.role)
                    .join(api_keys, api_keys.c.user_id == users.c.id)
                    .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
                )
            ).one_or_none()
        return Principal(row.id, row.role, key_id_of(key_hash)) if row else None

    async def ensure_user_with_key(self, *, user_id: str, name: str, role: str, api_key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(users).values(id=user_id, name=name, role=role).on_conflict_do_nothing()
            )
            await conn.execute(
                insert(api_keys)
                .values(key_hash=hash_key(api_key), user_id=user_id, display_prefix=api_key[:8])
                .on_conflict_do_nothing()
            )
