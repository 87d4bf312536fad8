"""job_slots: a scheduled job's slot completed by some instance (the sender's pass runs once per slot)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.tables

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = gateway.tables.UTCDateTime
    op.create_table(
        "job_slots",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("slot", utc(), nullable=False),
        sa.Column("completed_at", utc(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("job", "slot"),
    )


def downgrade() -> None:
    op.drop_table("job_slots")
