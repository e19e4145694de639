"""Video batches, and client webhooks: endpoints, per-owner signing secrets, per-video subscriptions
and the deliveries queue.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"


def upgrade(schema: str) -> None:
    op.create_table(
        "video_batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(128)),
        # SHA-256 of the requests: a key reused with another body is refused.
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("owner_id", "idempotency_key", name="video_batches_owner_key"),
        schema=schema,
    )
    op.create_index(
        "video_batches_owner_created", "video_batches", ["owner_id", "created_at", "id"], schema=schema
    )
    op.create_table(
        "video_batch_items",
        sa.Column(
            "batch_id",
            sa.String(40),
            sa.ForeignKey(f"{schema}.video_batches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("item_index", sa.Integer, primary_key=True),
        sa.Column("video_id", sa.String(128)),
        # The OpenAI error object when the item made no video.
        sa.Column("error", postgresql.JSONB),
        sa.CheckConstraint("(video_id IS NULL) <> (error IS NULL)", name="video_batch_items_one_outcome"),
        schema=schema,
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )
    op.create_index(
        "webhook_endpoints_owner_created",
        "webhook_endpoints",
        ["owner_id", "created_at", "id"],
        schema=schema,
    )
    op.create_table(
        "webhook_secrets",
        sa.Column("owner_id", sa.String(64), primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        # After a rotation the old secret also signs until this time, so receivers can switch over.
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_expires_at", sa.DateTime(timezone=True)),
        schema=schema,
    )
    op.create_table(
        "video_webhooks",
        sa.Column("video_id", sa.String(128), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )
    op.create_table(
        "webhook_deliveries",
        # The webhook-id header: the same on every try.
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("video_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        # NULL for a per-video webhook_url, signed with the owner's secret.
        sa.Column(
            "endpoint_id", sa.String(40), sa.ForeignKey(f"{schema}.webhook_endpoints.id", ondelete="CASCADE")
        ),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        # Tries started; also the lease's fencing token.
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        # When a pending delivery is due; while one is being sent, when its lease runs out.
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_status"),
        schema=schema,
    )
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        schema=schema,
    )
    op.create_index(
        "webhook_deliveries_finished",
        "webhook_deliveries",
        ["finished_at"],
        postgresql_where=sa.text("status <> 'pending'"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    for table in (
        "webhook_deliveries",
        "video_webhooks",
        "webhook_secrets",
        "webhook_endpoints",
        "video_batch_items",
        "video_batches",
    ):
        op.drop_table(table, schema=schema)
