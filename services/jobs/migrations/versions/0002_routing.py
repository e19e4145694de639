"""Routing across provider deployments: assignment, failover memory, FIFO order, request budgets,
progress deadlines, and de-duplicated provider webhooks.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"


def upgrade(schema: str) -> None:
    op.add_column("jobs", sa.Column("deployment", sa.String(64)), schema=schema)
    op.add_column("jobs", sa.Column("upstream_model", sa.String(128)), schema=schema)
    op.add_column(
        "jobs",
        sa.Column("tried_deployments", postgresql.ARRAY(sa.String(64)), nullable=False, server_default="{}"),
        schema=schema,
    )
    op.add_column("jobs", sa.Column("queued_at", sa.DateTime(timezone=True)), schema=schema)
    op.add_column("jobs", sa.Column("submitted_at", sa.DateTime(timezone=True)), schema=schema)
    op.add_column("jobs", sa.Column("last_progress_at", sa.DateTime(timezone=True)), schema=schema)
    op.add_column("jobs", sa.Column("poll_interval_seconds", sa.Float), schema=schema)
    op.create_index(
        "jobs_queue",
        "jobs",
        ["model", "queued_at", "id"],
        schema=schema,
        postgresql_where=sa.text("stage = 'queued'"),
    )
    op.create_index(
        "jobs_upstream",
        "jobs",
        ["deployment", "upstream_id"],
        unique=True,  # two jobs can never claim the same upstream video
        schema=schema,
        postgresql_where=sa.text("upstream_id IS NOT NULL"),
    )
    op.create_table(
        "provider_budgets",
        sa.Column("deployment", sa.String(64), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    op.create_table(
        "provider_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("deployment", sa.String(64), nullable=False),
        sa.Column("upstream_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("provider_events", schema=schema)
    op.drop_table("provider_budgets", schema=schema)
    op.drop_index("jobs_upstream", "jobs", schema=schema)
    op.drop_index("jobs_queue", "jobs", schema=schema)
    for column in (
        "poll_interval_seconds",
        "last_progress_at",
        "submitted_at",
        "queued_at",
        "tried_deployments",
        "upstream_model",
        "deployment",
    ):
        op.drop_column("jobs", column, schema=schema)
