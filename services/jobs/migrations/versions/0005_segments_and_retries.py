"""Long videos (the clips of a job, and which one is being made) and retries of failed jobs.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"


def upgrade(schema: str) -> None:
    op.add_column(
        "jobs",
        sa.Column("segments", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        schema=schema,
    )
    op.add_column(
        "jobs", sa.Column("segment_index", sa.Integer, nullable=False, server_default="0"), schema=schema
    )
    op.add_column(
        "jobs", sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"), schema=schema
    )
    op.add_column("jobs", sa.Column("last_retry_at", sa.DateTime(timezone=True)), schema=schema)


def downgrade(schema: str) -> None:
    for column in ("last_retry_at", "retry_count", "segment_index", "segments"):
        op.drop_column("jobs", column, schema=schema)
