"""Reference images: one row per (job, image index), kept 24 hours, then swept with its object.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade(schema: str) -> None:
    op.create_table(
        "reference_images",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("image_index", sa.SmallInteger, nullable=False),
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("declared_content_type", sa.String(255), nullable=False),
        sa.Column("detected_format", sa.String(16), nullable=False),
        sa.Column("source_bytes", sa.BigInteger, nullable=False),
        sa.Column("original_width", sa.Integer, nullable=False),
        sa.Column("original_height", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "image_index", name="reference_images_pkey"),
        schema=schema,
    )
    # The sweeper's only question: which rows have expired.
    op.create_index("reference_images_expires_at", "reference_images", ["expires_at"], schema=schema)


def downgrade(schema: str) -> None:
    op.drop_table("reference_images", schema=schema)
