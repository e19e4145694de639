"""API key management (public id, name, last use, limits) and per-key request buckets.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade(schema: str) -> None:
    op.add_column("api_keys", sa.Column("id", sa.String(20)), schema=schema)
    # The public id was always derived from the hash; existing keys keep the id they were shown.
    op.execute(f"UPDATE \"{schema}\".api_keys SET id = 'key_' || left(key_hash, 16)")
    op.alter_column("api_keys", "id", nullable=False, schema=schema)
    op.create_unique_constraint("api_keys_id_unique", "api_keys", ["id"], schema=schema)
    op.add_column(
        "api_keys", sa.Column("name", sa.String(200), nullable=False, server_default=""), schema=schema
    )
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)), schema=schema)
    # NULL: the gateway's default; 0: unlimited.
    op.add_column("api_keys", sa.Column("requests_per_minute", sa.Integer), schema=schema)
    op.add_column(
        "api_keys",
        sa.Column("max_concurrent_jobs", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.create_check_constraint(
        "api_keys_limits_not_negative",
        "api_keys",
        "coalesce(requests_per_minute, 0) >= 0 AND max_concurrent_jobs >= 0",
        schema=schema,
    )
    op.create_table(
        "request_buckets",
        sa.Column("bucket", sa.String(100), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("request_buckets", schema=schema)
    op.drop_constraint("api_keys_limits_not_negative", "api_keys", schema=schema)
    for column in ("max_concurrent_jobs", "requests_per_minute", "last_used_at", "name"):
        op.drop_column("api_keys", column, schema=schema)
    op.drop_constraint("api_keys_id_unique", "api_keys", schema=schema)
    op.drop_column("api_keys", "id", schema=schema)
