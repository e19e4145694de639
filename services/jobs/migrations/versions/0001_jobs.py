"""Jobs and their status-event outbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade(schema: str) -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("seconds", sa.Integer, nullable=False),
        sa.Column("size", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("upstream_id", sa.String(128)),
        sa.Column("cost_credits", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("asset_key", sa.Text),
        sa.Column("asset_duration", sa.Float),
        sa.Column("asset_width", sa.Integer),
        sa.Column("asset_height", sa.Integer),
        sa.Column("asset_codec", sa.String(32)),
        sa.Column("asset_bytes", sa.BigInteger),
        sa.Column("traceparent", sa.String(64), nullable=False, server_default=""),
        sa.Column("event_sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "stage IN ('admitting','queued','submitting','generating','downloading','rendering',"
            "'capturing','releasing','completed','failed')",
            name="jobs_stage_known",
        ),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="jobs_progress_range"),
        schema=schema,
    )
    op.create_index("jobs_owner_created", "jobs", ["owner_id", "created_at", "id"], schema=schema)
    op.create_index(
        "jobs_owner_request",
        "jobs",
        ["owner_id", "request_id"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_index(
        "jobs_due",
        "jobs",
        ["next_attempt_at"],
        schema=schema,
        postgresql_where=sa.text("stage NOT IN ('completed', 'failed')"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("msg_id", sa.Text, nullable=False, unique=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.dialects.postgresql.JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=schema,
    )
    op.create_index(
        "outbox_unpublished",
        "outbox",
        ["id"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade(schema: str) -> None:
    op.drop_table("outbox", schema=schema)
    op.drop_table("jobs", schema=schema)
