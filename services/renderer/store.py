"""Asset records in PostgreSQL (schema `renderer`): one row per (job, variant)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.renderer.domain import AssetVariant, MediaProbe, StoredAsset

SCHEMA = "renderer"
metadata = MetaData(schema=SCHEMA)

assets = Table(
    "assets",
    metadata,
    Column("job_id", String(128), nullable=False),
    Column("variant", String(32), nullable=False),
    Column("owner_id", String(128), nullable=False),
    Column("object_key", Text, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("duration_seconds", Double, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("video_codec", String(32), nullable=False),
    Column("audio_codec", String(32), nullable=False),
    Column("bit_rate", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "variant", name="assets_pkey"),
)


class AssetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, stored: Sequence[StoredAsset]) -> None:
        """Insert the job's assets in one transaction; rows already there are kept as they are."""
        if not stored:
            return
        rows = [
            {
                "job_id": asset.job_id,
                "variant": asset.variant.value,
                "owner_id": asset.owner_id,
                "object_key": asset.object_key,
                "content_type": asset.content_type,
                "duration_seconds": asset.probe.duration_seconds,
                "width": asset.probe.width,
                "height": asset.probe.height,
                "video_codec": asset.probe.video_codec,
                "audio_codec": asset.probe.audio_codec,
                "bit_rate": asset.probe.bit_rate,
                "size_bytes": asset.probe.size_bytes,
            }
            for asset in stored
        ]
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(assets).values(rows).on_conflict_do_nothing(index_elements=["job_id", "variant"])
            )

    async def for_job(self, job_id: str) -> list[StoredAsset]:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(assets).where(assets.c.job_id == job_id))
            return [_from_row(row) for row in result]

    async def get(self, *, owner_id: str, job_id: str, variant: AssetVariant) -> StoredAsset | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(assets).where(
                    assets.c.job_id == job_id,
                    assets.c.variant == variant.value,
                    assets.c.owner_id == owner_id,
                )
            )
            row = result.first()
        return _from_row(row) if row is not None else None


def _from_row(row: object) -> StoredAsset:
    m = row._mapping  # type: ignore[attr-defined]
    return StoredAsset(
        job_id=m["job_id"],
        owner_id=m["owner_id"],
        variant=AssetVariant(m["variant"]),
        object_key=m["object_key"],
        content_type=m["content_type"],
        probe=MediaProbe(
            duration_seconds=m["duration_seconds"],
            width=m["width"],
            height=m["height"],
            video_codec=m["video_codec"],
            audio_codec=m["audio_codec"],
            bit_rate=m["bit_rate"],
            size_bytes=m["size_bytes"],
        ),
    )
