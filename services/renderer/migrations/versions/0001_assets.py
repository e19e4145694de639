"""Renderer assets: one row per (job, variant) kept in permanent storage.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade(schema: str) -> None:
    op.create_table(
        "assets",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("duration_seconds", sa.Double, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("video_codec", sa.String(32), nullable=False),
        sa.Column("audio_codec", sa.String(32), nullable=False),
        sa.Column("bit_rate", sa.BigInteger, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job_id", "variant", name="assets_pkey"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("assets", schema=schema)
