"""sender: deliveries (one row per invoice step, exactly once), sender passes, holds, bounces

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.tables

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = gateway.tables.UTCDateTime
    op.create_table(
        "sender_passes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=32), nullable=False),
        sa.Column("now", utc(), nullable=False),
        sa.Column("started_at", utc(), nullable=False),
        sa.Column("heartbeat_at", utc(), nullable=False),
        sa.Column("finished_at", utc(), nullable=True),
        sa.Column("sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_passes")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("administration_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("scheduled_for", utc(), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_at", utc(), nullable=True),
        sa.Column("sent_at", utc(), nullable=True),
        sa.Column("updated_at", utc(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("costs_cents", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["administration_id"], ["administrations.id"], name=op.f("fk_deliveries_administration_id")
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_deliveries_invoice_id")),
        sa.ForeignKeyConstraint(["pass_id"], ["sender_passes.id"], name=op.f("fk_deliveries_pass_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("invoice_id", "kind", "sequence", name="uq_deliveries_invoice_step"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_status", ["status"], unique=False)
        batch_op.create_index("ix_deliveries_administration_status", ["administration_id", "status"], unique=False)
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("administration_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("flag", sa.String(length=24), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["administration_id"], ["administrations.id"], name=op.f("fk_holds_administration_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("administration_id", "scope", "target_id", "flag", name="uq_holds_target_flag"),
    )
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("debtor_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("bounced_at", utc(), nullable=False),
        sa.ForeignKeyConstraint(["debtor_id"], ["debtors.id"], name=op.f("fk_bounces_debtor_id")),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name=op.f("fk_bounces_delivery_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
        sa.UniqueConstraint("debtor_id", "address", name="uq_bounces_debtor_address"),
    )


def downgrade() -> None:
    op.drop_table("bounces")
    op.drop_table("holds")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_administration_status")
        batch_op.drop_index("ix_deliveries_status")
    op.drop_table("deliveries")
    op.drop_table("sender_passes")
