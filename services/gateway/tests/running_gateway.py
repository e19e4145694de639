"""A real gateway server (its own HTTP server on a loopback port) against a migrated test database.

No gRPC peer is running: these tests use routes that need only the gateway's database (keys,
users) or that are answered before a handler runs (auth, rate limits, body limits, CORS).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from servicekit.db import make_engine

from services.gateway.app import migrate, serve
from services.gateway.config import Settings
from services.gateway.identity import IdentityStore

UNREACHABLE = "127.0.0.1:9"  # the discard port: a gRPC call there fails fast, none is expected


def settings_for(database_url: str, **overrides: object) -> Settings:
    base = Settings(
        database_url=database_url,
        jobs_address=UNREACHABLE,
        renderer_address=UNREACHABLE,
        billing_address=UNREACHABLE,
        port=0,
        shutdown_seconds=1,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


async def migrated(database_url: str) -> str:
    await asyncio.to_thread(migrate, settings_for(database_url))
    return database_url


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[str]:
    """The base URL of a gateway serving `settings`."""
    async with serve(settings) as running:
        yield f"http://127.0.0.1:{running.port}"


@dataclass(frozen=True)
class Tenant:
    user_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def new_tenant(database_url: str, *, role: str = "user") -> Tenant:
    user_id = f"user_{role}_{uuid.uuid4().hex[:8]}"
    key = f"vf_test_{uuid.uuid4().hex}"
    engine = make_engine(database_url, pool_size=1)
    try:
        await IdentityStore(engine).ensure_user_with_key(
            user_id=user_id, name=user_id, role=role, api_key=key
        )
    finally:
        await engine.dispose()
    return Tenant(user_id, key)
