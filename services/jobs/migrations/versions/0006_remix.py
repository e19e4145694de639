"""Remixes: the job a video was remixed from, and the provider video and deployment it must use.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade(schema: str) -> None:
    op.add_column("jobs", sa.Column("remixed_from_job_id", sa.String(64)), schema=schema)
    op.add_column("jobs", sa.Column("remix_source_upstream_id", sa.String(128)), schema=schema)
    op.add_column("jobs", sa.Column("pinned_deployment", sa.String(64)), schema=schema)


def downgrade(schema: str) -> None:
    for column in ("pinned_deployment", "remix_source_upstream_id", "remixed_from_job_id"):
        op.drop_column("jobs", column, schema=schema)
