"""Records in PostgreSQL (schema `renderer`): assets, one row per (job, variant), and reference
images, one row per (job, image index) until they expire."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.renderer.domain import AssetVariant, MediaProbe, StoredAsset
from services.renderer.domain.references import StoredReference
from services.renderer.domain.renditions import RenditionRecord

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

reference_images = Table(
    "reference_images",
    metadata,
    Column("job_id", String(128), nullable=False),
    Column("image_index", SmallInteger, nullable=False),
    Column("owner_id", String(128), nullable=False),
    Column("object_key", Text, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("declared_content_type", String(255), nullable=False),
    Column("detected_format", String(16), nullable=False),
    Column("source_bytes", BigInteger, nullable=False),
    Column("original_width", Integer, nullable=False),
    Column("original_height", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("job_id", "image_index", name="reference_images_pkey"),
)

renditions = Table(
    "renditions",
    metadata,
    Column("job_id", String(128), nullable=False),
    Column("name", String(16), nullable=False),
    Column("owner_id", String(128), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("bit_rate", BigInteger, nullable=False),
    Column("has_audio", Boolean, nullable=False),
    Column("remuxed", Boolean, nullable=False),
    Column("object_key", Text, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("hls_master_key", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "name", name="renditions_pkey"),
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

    async def delete_job(self, *, owner_id: str, job_id: str) -> int:
        """Delete the owner's rows for the job (assets and renditions); how many went."""
        async with self._engine.begin() as conn:
            gone = await conn.execute(
                delete(renditions).where(renditions.c.job_id == job_id, renditions.c.owner_id == owner_id)
            )
            result = await conn.execute(
                delete(assets).where(assets.c.job_id == job_id, assets.c.owner_id == owner_id)
            )
            return int(result.rowcount or 0) + int(gone.rowcount or 0)

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


class RenditionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, records: Sequence[RenditionRecord]) -> None:
        """All of a job's rungs in one transaction; a concurrent writer's rows win and are kept."""
        if not records:
            return
        rows = [
            {
                "job_id": r.job_id,
                "name": r.name,
                "owner_id": r.owner_id,
                "width": r.width,
                "height": r.height,
                "bit_rate": r.bit_rate,
                "has_audio": r.has_audio,
                "remuxed": r.remuxed,
                "object_key": r.object_key,
                "content_type": r.content_type,
                "size_bytes": r.size_bytes,
                "hls_master_key": r.hls_master_key,
            }
            for r in records
        ]
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(renditions).values(rows).on_conflict_do_nothing(index_elements=["job_id", "name"])
            )

    async def for_job(self, *, owner_id: str, job_id: str) -> list[RenditionRecord]:
        """The owner's rungs for the job, largest first; [] for anyone else's."""
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(renditions)
                .where(renditions.c.job_id == job_id, renditions.c.owner_id == owner_id)
                .order_by(func.least(renditions.c.width, renditions.c.height).desc())
            )
            return [
                RenditionRecord(**{k: v for k, v in row._mapping.items() if k != "created_at"})
                for row in result
            ]


class _OtherOwner(Exception):
    pass


class ReferenceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, stored: Sequence[StoredReference]) -> bool:
        """Insert or refresh the job's rows in one transaction, keyed by (job, index), so a retry
        overwrites its own rows. False, and nothing written, when the job's rows belong to another owner.
        """
        if not stored:
            return True
        rows = [
            {
                "job_id": ref.job_id,
                "image_index": ref.image.index,
                "owner_id": ref.owner_id,
                "object_key": ref.object_key,
                "content_type": ref.image.content_type,
                "declared_content_type": ref.image.declared_content_type[:255],
                "detected_format": ref.image.detected_format.value,
                "source_bytes": ref.image.source_bytes,
                "original_width": ref.image.original_width,
                "original_height": ref.image.original_height,
                "width": ref.image.width,
                "height": ref.image.height,
                "size_bytes": len(ref.image.data),
                "created_at": ref.created_at,
                "expires_at": ref.expires_at,
            }
            for ref in stored
        ]
        statement = insert(reference_images).values(rows)
        refreshed = {
            name: statement.excluded[name]
            for name in rows[0]
            if name not in {"job_id", "image_index", "owner_id"}
        }
        upsert = statement.on_conflict_do_update(
            index_elements=["job_id", "image_index"],
            set_=refreshed,
            where=reference_images.c.owner_id == statement.excluded.owner_id,
        ).returning(reference_images.c.image_index)
        try:
            async with self._engine.begin() as conn:
                written = (await conn.execute(upsert)).all()
                if len(written) != len(rows):
                    raise _OtherOwner  # leaving the block by an exception rolls the upsert back
        except _OtherOwner:
            return False
        return True

    async def sweep_batch(
        self, now: datetime, limit: int, delete_objects: Callable[[list[str]], Awaitable[None]]
    ) -> int:
        """Delete up to `limit` expired rows and, before they commit, their objects.

        Rows are locked with SKIP LOCKED, so replicas sweeping at once take disjoint batches. If
        deleting the objects fails, the transaction rolls back and the rows wait for the next pass;
        deleting an object that is already gone succeeds, so a repeated pass is harmless.
        """
        async with self._engine.begin() as conn:
            expired = (
                await conn.execute(
                    select(
                        reference_images.c.job_id,
                        reference_images.c.image_index,
                        reference_images.c.object_key,
                    )
                    .where(reference_images.c.expires_at <= now)
                    .order_by(reference_images.c.expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not expired:
                return 0
            await delete_objects([row.object_key for row in expired])
            await conn.execute(
                delete(reference_images).where(
                    tuple_(reference_images.c.job_id, reference_images.c.image_index).in_(
                        [(row.job_id, row.image_index) for row in expired]
                    )
                )
            )
        return len(expired)
