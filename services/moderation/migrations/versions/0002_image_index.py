"""Per-image decisions: image_index (-1 for the prompt and for an approved images summary).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade(schema: str) -> None:
    op.add_column(
        "decisions",
        sa.Column("image_index", sa.Integer, nullable=False, server_default=sa.text("-1")),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_column("decisions", "image_index", schema=schema)
