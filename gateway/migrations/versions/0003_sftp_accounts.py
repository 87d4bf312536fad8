"""SFTP accounts, their keys and administrations, uploads, and remotely pulled files

Revision ID: 0003
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.tables

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sftp_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created_at", gateway.tables.UTCDateTime(), nullable=False),
        sa.Column("updated_at", gateway.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sftp_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_sftp_accounts_name")),
    )
    op.create_table(
        "sftp_account_administrations",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("administration", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["sftp_accounts.id"],
            name=op.f("fk_sftp_account_administrations_account_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "administration", name=op.f("pk_sftp_account_administrations")),
    )
    op.create_table(
        "sftp_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key_type", sa.String(length=64), nullable=False),
        sa.Column("key_data", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("bits", sa.Integer(), nullable=False),
        sa.Column("comment", sa.String(length=255), nullable=True),
        sa.Column("added_at", gateway.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["sftp_accounts.id"], name=op.f("fk_sftp_keys_account_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sftp_keys")),
        sa.UniqueConstraint("account_id", "fingerprint", name="uq_sftp_keys_account_fingerprint"),
    )
    op.create_table(
        "sftp_uploads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("account_name", sa.String(length=64), nullable=False),
        sa.Column("administration", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", gateway.tables.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("finished_at", gateway.tables.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["sftp_accounts.id"], name=op.f("fk_sftp_uploads_account_id"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sftp_uploads")),
    )
    op.create_index("ix_sftp_uploads_pending", "sftp_uploads", ["administration", "status", "file_name"])
    op.create_index("ix_sftp_uploads_account_status", "sftp_uploads", ["account_id", "status"])
    op.create_table(
        "sftp_pulled",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("administration", sa.String(length=64), nullable=False),
        sa.Column("remote_name", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", gateway.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sftp_pulled")),
        sa.UniqueConstraint(
            "administration", "remote_name", "size", "mtime", name="uq_sftp_pulled_identity"
        ),
    )


def downgrade() -> None:
    op.drop_table("sftp_pulled")
    op.drop_index("ix_sftp_uploads_account_status", table_name="sftp_uploads")
    op.drop_index("ix_sftp_uploads_pending", table_name="sftp_uploads")
    op.drop_table("sftp_uploads")
    op.drop_table("sftp_keys")
    op.drop_table("sftp_account_administrations")
    op.drop_table("sftp_accounts")
