"""connector tokens (OAuth tokens of API connectors, encrypted)

Revision ID: 0005
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.tables

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connector_tokens",
        sa.Column("administration_id", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", gateway.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["administration_id"], ["administrations.id"], name=op.f("fk_connector_tokens_administration_id")
        ),
        sa.PrimaryKeyConstraint("administration_id", name=op.f("pk_connector_tokens")),
    )


def downgrade() -> None:
    op.drop_table("connector_tokens")
