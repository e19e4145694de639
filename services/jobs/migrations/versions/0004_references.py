"""Object keys of a job's prepared reference images (kept 24 hours by the render service).

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"


def upgrade(schema: str) -> None:
    op.add_column(
        "jobs",
        sa.Column("reference_keys", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_column("jobs", "reference_keys", schema=schema)
