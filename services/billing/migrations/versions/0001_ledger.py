"""Accounts, double-entry ledger, holds and the event outbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None


def upgrade(schema: str) -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("available", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("held", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("available >= 0", name="accounts_available_not_negative"),
        sa.CheckConstraint("held >= 0", name="accounts_held_not_negative"),
        schema=schema,
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        # One money movement per key: reserve:<job>, settle:<job> (capture or release), credit:<request>.
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64), sa.ForeignKey(f"{schema}.accounts.id"), nullable=False),
        sa.Column("job_id", sa.String(64)),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('credit', 'reserve', 'capture', 'release')", name="transactions_kind"),
        sa.CheckConstraint("amount >= 0", name="transactions_amount_not_negative"),
        schema=schema,
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "transaction_id",
            sa.BigInteger,
            sa.ForeignKey(f"{schema}.transactions.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("account_id", sa.String(64), sa.ForeignKey(f"{schema}.accounts.id"), nullable=False),
        sa.Column("bucket", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "bucket IN ('available', 'held', 'revenue', 'funding')", name="ledger_entries_bucket"
        ),
        sa.CheckConstraint("amount <> 0", name="ledger_entries_amount_not_zero"),
        schema=schema,
    )
    op.create_index(
        "ledger_entries_account_bucket", "ledger_entries", ["account_id", "bucket"], schema=schema
    )
    op.create_table(
        "holds",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey(f"{schema}.accounts.id"), nullable=False, index=True
        ),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("size", sa.Text, nullable=False),
        sa.Column("seconds", sa.Integer, nullable=False),
        sa.Column("micro_usd_per_second", sa.BigInteger, nullable=False),
        sa.Column("credits_per_dollar", sa.Integer, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("captured_amount", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("state", sa.String(16), nullable=False, server_default="held"),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("settled_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("amount > 0", name="holds_amount_positive"),
        sa.CheckConstraint("state IN ('held', 'captured', 'released')", name="holds_state"),
        sa.CheckConstraint("captured_amount BETWEEN 0 AND amount", name="holds_captured_within_hold"),
        sa.CheckConstraint(
            "state = 'captured' OR captured_amount = 0", name="holds_captured_only_when_captured"
        ),
        sa.CheckConstraint("(state = 'held') = (settled_at IS NULL)", name="holds_settled_when_not_held"),
        schema=schema,
    )
    # Mirrors servicekit.outbox.outbox_table.
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("msg_id", sa.Text, nullable=False, unique=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
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

    # The ledger is append-only: history is corrected by new transactions, never edited.
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    for table in ("transactions", "ledger_entries"):
        op.execute(
            f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{schema}".{table} '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse_change()'
        )
        op.execute(
            f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "{schema}".{table} '
            f'FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".refuse_change()'
        )
    # A settled hold stays settled: captured at most once, released at most once, never both.
    op.execute(
        f'CREATE TRIGGER holds_settle_once BEFORE UPDATE ON "{schema}".holds FOR EACH ROW '
        f"WHEN (OLD.state <> 'held') EXECUTE FUNCTION \"{schema}\".refuse_change()"
    )
    op.execute(
        f'CREATE TRIGGER holds_no_delete BEFORE DELETE ON "{schema}".holds '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse_change()'
    )
    # Every transaction's postings sum to zero, checked at commit once all postings are in.
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".check_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE total numeric;
        BEGIN
            SELECT SUM(amount) INTO total FROM "{schema}".ledger_entries
                WHERE transaction_id = NEW.transaction_id;
            IF total <> 0 THEN
                RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.transaction_id, total
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f'CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON "{schema}".ledger_entries '
        f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        f'EXECUTE FUNCTION "{schema}".check_transaction_balanced()'
    )


def downgrade(schema: str) -> None:
    for table in ("outbox", "holds", "ledger_entries", "transactions", "accounts"):
        op.drop_table(table, schema=schema)
    op.execute(f'DROP FUNCTION "{schema}".check_transaction_balanced()')
    op.execute(f'DROP FUNCTION "{schema}".refuse_change()')
