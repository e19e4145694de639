"""Webhook endpoints scoped to one API key: they get events only of videos that key created.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade(schema: str) -> None:
    op.add_column("webhook_endpoints", sa.Column("api_key_id", sa.String(64)), schema=schema)


def downgrade(schema: str) -> None:
    op.drop_column("webhook_endpoints", "api_key_id", schema=schema)
