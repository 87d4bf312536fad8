"""The database tables (SQLAlchemy Core). Alembic migrations create them; this module only describes them.

Money is stored as whole cents (BIGINT) so that SQLite and PostgreSQL compare and add it exactly;
timestamps are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; SQLite gives naive values back, this makes them aware again."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; times must be aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


def debtor_columns() -> list[sa.Column[Any]]:
    text = sa.String(255)
    return [
        sa.Column("company_name", text),
        sa.Column("is_company", sa.Boolean),
        sa.Column("firstname", text),
        sa.Column("infix", text),
        sa.Column("lastname", text),
        sa.Column("email", text),
        sa.Column("invoice_email", text),
        sa.Column("reminder_email", text),
        sa.Column("phone", text),
        sa.Column("mobile", text),
        sa.Column("street_1", text),
        sa.Column("street_2", text),
        sa.Column("postal_code", text),
        sa.Column("city", text),
        sa.Column("country_code", sa.String(2)),
        sa.Column("language_code", sa.String(8)),
        sa.Column("vat_number", text),
        sa.Column("coc_number", text),
        sa.Column("iban", text),
    ]


administrations = sa.Table(
    "administrations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("original_name", sa.String(1024), nullable=False),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("administration_id", "sha256", name="uq_files_administration_sha256"),
)

COUNT_NAMES = (
    "rows",
    "debtors_created",
    "debtors_updated",
    "invoices_created",
    "invoices_updated",
    "invoices_closed",
    "errors",
    "warnings",
    "ignored",
)

import_runs = sa.Table(
    "import_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("file_id", sa.ForeignKey("files.id")),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("format", sa.String(32)),
    sa.Column("file_name", sa.String(1024)),
    sa.Column("sha256", sa.String(64)),
    sa.Column("archived_path", sa.String(2048)),
    sa.Column("detected", sa.JSON),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in COUNT_NAMES),
    sa.Index("ix_import_runs_administration_started", "administration_id", "started_at"),
    sa.Index("ix_import_runs_sha256", "administration_id", "sha256"),
)

run_problems = sa.Table(
    "run_problems",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("import_runs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("row", sa.Integer),
    sa.Column("column_name", sa.String(255)),  # a CSV column or an XML element path
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

debtors = sa.Table(
    "debtors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("code", sa.String(255), nullable=False),
    *debtor_columns(),
    sa.Column("created_run_id", sa.Integer, nullable=False),
    sa.Column("updated_run_id", sa.Integer, nullable=False),
    sa.UniqueConstraint("administration_id", "code", name="uq_debtors_administration_code"),
)

invoices = sa.Table(
    "invoices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("debtor_id", sa.ForeignKey("debtors.id"), nullable=False, index=True),
    sa.Column("number", sa.String(255), nullable=False),
    sa.Column("invoice_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("amount_total_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_open_cents", sa.BigInteger, nullable=False),
    sa.Column("description", sa.String(255)),
    sa.Column("payment_condition", sa.String(255)),
    sa.Column("payment_reference", sa.String(255)),
    sa.Column("order_number", sa.String(255)),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("document_filename", sa.String(255)),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("send", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("loaded_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("created_run_id", sa.Integer, nullable=False),
    sa.Column("updated_run_id", sa.Integer, nullable=False),
    sa.UniqueConstraint("administration_id", "number", name="uq_invoices_administration_number"),
    sa.Index("ix_invoices_administration_status", "administration_id", "status"),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("invoice_id", sa.ForeignKey("invoices.id"), nullable=False, index=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("paid_on", sa.Date, nullable=False),
    sa.Column("run_id", sa.ForeignKey("import_runs.id"), nullable=False, index=True),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # pdf | ubl
    # The invoice number the document names: UBL cbc:ID, or the pattern's match in a PDF's name; for a PDF
    # under the default rule, the number it was linked by (null while unlinked).
    sa.Column("number", sa.String(255)),
    sa.Column("invoice_id", sa.ForeignKey("invoices.id"), index=True),
    sa.Column("run_id", sa.ForeignKey("import_runs.id"), nullable=False, index=True),
    sa.Column("file_id", sa.ForeignKey("files.id"), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),
    sa.Column("archived_path", sa.String(2048), nullable=False),
    sa.Column("details", sa.JSON),  # UBL: the validated document's key fields; PDF: version and size
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("linked_at", UTCDateTime),
    sa.Index("ix_documents_administration_invoice", "administration_id", "invoice_id"),
)

# The invoice numbers a document may name, in order of preference (rank 0 first): the one number of a UBL
# file or a pattern match, or every candidate of the default file-name rule. Linking joins these to invoices.
document_numbers = sa.Table(
    "document_numbers",
    metadata,
    sa.Column("document_id", sa.ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("number", sa.String(255), nullable=False),
)

# -- the sender's own tables (issue 5): business tables are only read by the sender -------------------------

sender_passes = sa.Table(
    "sender_passes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process", sa.String(32), nullable=False),  # a random token per process (pids are reused)
    sa.Column("now", UTCDateTime, nullable=False),  # the business time of the pass (--now or the clock)
    sa.Column("started_at", UTCDateTime, nullable=False),  # real time, like heartbeat_at
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
)

job_slots = sa.Table(  # a slot of a scheduled job that some instance completed (gateway.sender: the pass)
    "job_slots",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("slot", UTCDateTime, primary_key=True),
    sa.Column("completed_at", UTCDateTime, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("invoice_id", sa.ForeignKey("invoices.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("scheduled_for", UTCDateTime, nullable=False),
    sa.Column("recipient", sa.String(255)),
    sa.Column("message_id", sa.String(255)),
    sa.Column("pass_id", sa.ForeignKey("sender_passes.id")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("deadline", sa.Date),  # final reminder: the last day of the 14-day term
    sa.Column("costs_cents", sa.BigInteger),  # final reminder: the collection costs stated
    sa.UniqueConstraint("invoice_id", "kind", "sequence", name="uq_deliveries_invoice_step"),
    sa.Index("ix_deliveries_status", "status"),
    sa.Index("ix_deliveries_administration_status", "administration_id", "status"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),  # administration | debtor | invoice
    sa.Column("target_id", sa.Integer, nullable=False),  # debtors.id / invoices.id; 0 for the administration
    sa.Column("flag", sa.String(24), nullable=False),  # pause | pause_reminders | no_invoices | no_final_reminder
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("administration_id", "scope", "target_id", "flag", name="uq_holds_target_flag"),
)

bounces = sa.Table(
    "bounces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("debtor_id", sa.ForeignKey("debtors.id"), nullable=False),
    sa.Column("address", sa.String(255), nullable=False),  # lower case
    sa.Column("delivery_id", sa.ForeignKey("deliveries.id")),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("bounced_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("debtor_id", "address", name="uq_bounces_debtor_address"),
)
