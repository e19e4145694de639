"""Organisations (members spend from the organisation's account), per-key budgets, ledger listing.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade(schema: str) -> None:
    op.add_column(
        "accounts",
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey(f"{schema}.accounts.id"), nullable=True),
        schema=schema,
    )
    op.add_column(
        "accounts",
        sa.Column("is_organisation", sa.Boolean, nullable=False, server_default=sa.false()),
        schema=schema,
    )
    # Membership is one level deep; SetOrganisation checks this too, with both rows locked.
    op.create_check_constraint(
        "accounts_organisation_not_member",
        "accounts",
        "NOT (is_organisation AND organisation_id IS NOT NULL) AND organisation_id IS DISTINCT FROM id",
        schema=schema,
    )
    # Holds and transactions keep the paying account in account_id; initiated_by is the member
    # who started the video when an organisation pays (NULL when the account paid for itself).
    op.add_column("holds", sa.Column("initiated_by", sa.String(64), nullable=True), schema=schema)
    op.add_column("holds", sa.Column("api_key_id", sa.String(64), nullable=True), schema=schema)
    op.create_index(
        "holds_api_key_created",
        "holds",
        ["api_key_id", "created_at"],
        schema=schema,
        postgresql_where=sa.text("api_key_id IS NOT NULL"),
    )
    op.add_column("transactions", sa.Column("initiated_by", sa.String(64), nullable=True), schema=schema)
    op.create_index("transactions_account_id", "transactions", ["account_id", "id"], schema=schema)
    op.create_table(
        "budgets",
        sa.Column("api_key_id", sa.String(64), primary_key=True),
        sa.Column("daily_limit", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("monthly_limit", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("daily_limit >= 0 AND monthly_limit >= 0", name="budgets_limits_not_negative"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("budgets", schema=schema)
    op.drop_index("transactions_account_id", "transactions", schema=schema)
    op.drop_column("transactions", "initiated_by", schema=schema)
    op.drop_index("holds_api_key_created", "holds", schema=schema)
    op.drop_column("holds", "api_key_id", schema=schema)
    op.drop_column("holds", "initiated_by", schema=schema)
    op.drop_constraint("accounts_organisation_not_member", "accounts", schema=schema)
    op.drop_column("accounts", "is_organisation", schema=schema)
    op.drop_column("accounts", "organisation_id", schema=schema)
