"""The shared body of every service's Alembic env.py: one schema per service, one version table each."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text


def run_migrations() -> None:
    config = context.config
    schema: str = config.attributes["schema"]
    engine = create_engine(config.attributes["database_url"])
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            version_table_schema=schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations(schema=schema)
    engine.dispose()
