"""Renditions: one row per (job, rung), written only after every file of the ladder is stored.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade(schema: str) -> None:
    op.create_table(
        "renditions",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("bit_rate", sa.BigInteger, nullable=False),
        sa.Column("has_audio", sa.Boolean, nullable=False),
        sa.Column("remuxed", sa.Boolean, nullable=False),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("hls_master_key", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job_id", "name", name="renditions_pkey"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("renditions", schema=schema)
