"""The SFTP tables (issue 4): accounts with their keys and administrations, uploads (which account sent which
file, so its feedback can be written), and the files fetched by remote pull. Migration 0003 creates them."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.tables import UTCDateTime, metadata

sftp_accounts = sa.Table(
    "sftp_accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

sftp_account_administrations = sa.Table(
    "sftp_account_administrations",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("sftp_accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("administration", sa.String(64), primary_key=True),
)

sftp_keys = sa.Table(
    "sftp_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("sftp_accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key_type", sa.String(64), nullable=False),
    sa.Column("key_data", sa.Text, nullable=False),  # base64 of the public key blob
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("bits", sa.Integer, nullable=False),
    sa.Column("comment", sa.String(255)),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("account_id", "fingerprint", name="uq_sftp_keys_account_fingerprint"),
)

sftp_uploads = sa.Table(
    "sftp_uploads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("sftp_accounts.id", ondelete="SET NULL")),
    sa.Column("account_name", sa.String(64), nullable=False),
    sa.Column("administration", sa.String(64), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("uploaded_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # uploaded | imported | removed
    sa.Column("run_id", sa.Integer),
    sa.Column("finished_at", UTCDateTime),
    sa.Index("ix_sftp_uploads_pending", "administration", "status", "file_name"),
    sa.Index("ix_sftp_uploads_account_status", "account_id", "status"),
)

sftp_pulled = sa.Table(
    "sftp_pulled",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration", sa.String(64), nullable=False),
    sa.Column("remote_name", sa.String(1024), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("fetched_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("administration", "remote_name", "size", "mtime", name="uq_sftp_pulled_identity"),
)
