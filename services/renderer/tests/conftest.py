"""Fixtures shared by the renderer's service tests."""

from __future__ import annotations

import asyncio

import pytest
from servicekit.storage import S3Settings

from services.renderer.app import migrate
from services.renderer.config import Settings


@pytest.fixture
async def settings(infrastructure, fresh_database_url: str, s3_bucket: str) -> Settings:
    """Renderer settings on a fresh database (migrated) and a fresh bucket, any free port."""
    settings = Settings(
        database_url=fresh_database_url,
        s3=S3Settings(
            endpoint=infrastructure.s3_endpoint,
            access_key=infrastructure.s3_access_key,
            secret_key=infrastructure.s3_secret_key,
            region=infrastructure.s3_region,
            bucket=s3_bucket,
        ),
        grpc_listen_address="127.0.0.1:0",
        grpc_drain_seconds=1.0,
    )
    await asyncio.to_thread(migrate, settings)
    return settings
