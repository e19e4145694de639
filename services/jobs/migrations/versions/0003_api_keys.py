"""The API key behind each job, so a resumed admission charges the same key's budget.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade(schema: str) -> None:
    op.add_column(
        "jobs", sa.Column("api_key_id", sa.String(64), nullable=False, server_default=""), schema=schema
    )


def downgrade(schema: str) -> None:
    op.drop_column("jobs", "api_key_id", schema=schema)
