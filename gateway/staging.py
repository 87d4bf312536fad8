"""Staging: stream a snapshot into temporary tables and run the checks that need the whole snapshot.

A snapshot can hold a million rows; it is never held in memory. Its entries go, in chunks, into
temporary tables of the run's own connection, where the file-wide rules are set operations:
an invoice number twice in one snapshot is an error on every copy; one debtor code with conflicting
data is a warning and the last row wins; blocked keys (rows with errors, ignored items) trump staged rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.config import KindSettings
from gateway.ignore import IgnoreLists
from gateway.reconcile import decide_kind
from gateway.records import DEBTOR_DATA_FIELDS, Debtor, Problem, Snapshot, error, warning
from gateway.store import bulk_insert, driver_datetime
from gateway.tables import debtor_columns, invoices

CHUNK = 10_000
stage_metadata = sa.MetaData()

stage_debtors = sa.Table(
    "stage_debtors",
    stage_metadata,
    sa.Column("code", sa.String(255), primary_key=True),
    sa.Column("line", sa.Integer, nullable=False),
    *debtor_columns(),
    prefixes=["TEMPORARY"],
)
# One row each time the debtor data changes from one row to the next (rows of a debtor are usually together).
stage_debtor_versions = sa.Table(
    "stage_debtor_versions",
    stage_metadata,
    sa.Column("code", sa.String(255), nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.BigInteger, nullable=False),
    *debtor_columns(),
    prefixes=["TEMPORARY"],
)
# The invoice fields a snapshot delivers, typed as in the invoices table.
STAGED_INVOICE_FIELDS = (
    "number",
    "invoice_date",
    "due_date",
    "amount_total_cents",
    "amount_open_cents",
    "currency",
    "description",
    "payment_condition",
    "payment_reference",
    "order_number",
    "sent_at",
    "document_filename",
    "kind",
    "send",
)
stage_invoices = sa.Table(
    "stage_invoices",
    stage_metadata,
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("debtor_code", sa.String(255), nullable=False),
    *(invoices.c[name]._copy() for name in STAGED_INVOICE_FIELDS),
    prefixes=["TEMPORARY"],
)
stage_blocked = sa.Table(
    "stage_blocked",
    stage_metadata,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    prefixes=["TEMPORARY"],
)
stage_closures = sa.Table(
    "stage_closures",
    stage_metadata,
    sa.Column("invoice_id", sa.Integer, primary_key=True),
    sa.Column("amount_open_cents", sa.BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)

INVOICE_STAGE_COLUMNS = [c.name for c in stage_invoices.columns]
VERSION_STAGE_COLUMNS = [c.name for c in stage_debtor_versions.columns]
DEBTOR_STAGE_COLUMNS = [c.name for c in stage_debtors.columns]
_LAST_VERSIONS = (
    f"INSERT INTO stage_debtors ({', '.join(DEBTOR_STAGE_COLUMNS)}) "
    f"SELECT {', '.join('v.' + c for c in DEBTOR_STAGE_COLUMNS)} FROM stage_debtor_versions v "
    "JOIN (SELECT code, MAX(line) AS line FROM stage_debtor_versions GROUP BY code) m "
    "ON m.code = v.code AND m.line = v.line"
)


@dataclass(frozen=True)
class StagePolicy:
    """What staging needs of the administration's settings."""

    kinds: KindSettings
    ignore: IgnoreLists
    zone: ZoneInfo


@dataclass
class Staged:
    """The outcome of staging: file-wide problems found, and rows left out on purpose."""

    problems: list[Problem] = field(default_factory=list)
    ignored: int = 0


def create_stage(conn: Connection) -> None:
    drop_stage(conn)
    stage_metadata.create_all(conn)


def drop_stage(conn: Connection) -> None:
    for table in reversed(stage_metadata.sorted_tables):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")


def to_cents(amount: Decimal) -> int:
    """Whole cents of an amount; an amount with more than two decimals is a bug of its source."""
    cents = amount * 100
    whole = int(cents)
    if whole != cents:
        raise ValueError(f"amount {amount} has more than two decimals")
    return whole


def _sent_at(value: datetime | date | None, zone: ZoneInfo) -> datetime | None:
    """A delivered ``sent_at``: a date is midnight in the administration's zone; naive times are local."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def stage_snapshot(conn: Connection, snapshot: Snapshot, policy: StagePolicy) -> Staged:
    """Stream ``snapshot.entries`` into the stage tables, then apply the file-wide rules."""
    create_stage(conn)
    staged = Staged()
    invoice_rows: list[tuple[Any, ...]] = []
    version_rows: list[tuple[Any, ...]] = []
    blocked: set[tuple[str, str]] = set()
    previous: Debtor | None = None
    check_ignore = not policy.ignore.empty
    kinds, zone = policy.kinds, policy.zone

    def flush() -> None:
        bulk_insert(conn, "stage_invoices", INVOICE_STAGE_COLUMNS, invoice_rows)
        bulk_insert(conn, "stage_debtor_versions", VERSION_STAGE_COLUMNS, version_rows)
        invoice_rows.clear()
        version_rows.clear()

    for entry in snapshot.entries:
        inv, debtor = entry.invoice, entry.debtor
        if check_ignore and policy.ignore.is_ignored(inv.number, debtor.code, inv.payment_condition):
            blocked.add(("invoice", inv.number))
            staged.ignored += 1
            continue
        total, open_ = to_cents(inv.amount_total), to_cents(inv.amount_open)
        kind, kind_policy = decide_kind(total, open_, kinds)
        if kind_policy == "skip":
            blocked.add(("invoice", inv.number))
            staged.ignored += 1
            continue
        sent_at = None if inv.sent_at is None else _sent_at(inv.sent_at, zone)
        invoice_rows.append(
            (
                entry.line,
                inv.debtor_code,
                inv.number,
                inv.invoice_date.isoformat(),
                inv.due_date.isoformat(),
                total,
                open_,
                inv.currency,
                inv.description,
                inv.payment_condition,
                inv.payment_reference,
                inv.order_number,
                driver_datetime(conn, sent_at),
                inv.document_filename,
                kind,
                kind_policy == "import_and_send",
            )
        )
        if debtor is not previous:
            previous = debtor
            values = tuple(getattr(debtor, f) for f in DEBTOR_DATA_FIELDS)
            version_rows.append((debtor.code, entry.line, hash(values), *values))
        if len(invoice_rows) >= CHUNK:
            flush()
    flush()
    conn.exec_driver_sql("CREATE INDEX ix_stage_invoices_number ON stage_invoices (number)")
    analyze(conn, "stage_invoices", "stage_debtor_versions")
    conn.exec_driver_sql(_LAST_VERSIONS)
    blocked.update(("invoice", n) for n in snapshot.blocked_invoices)
    blocked.update(("debtor", c) for c in snapshot.blocked_debtors)
    staged.problems.extend(_duplicate_numbers(conn, blocked))
    bulk_insert(conn, "stage_blocked", ["kind", "key"], sorted(blocked))
    analyze(conn, "stage_debtors", "stage_blocked")
    if any(kind == "invoice" for kind, _ in blocked):
        conn.exec_driver_sql(
            "DELETE FROM stage_invoices WHERE number IN (SELECT key FROM stage_blocked WHERE kind = 'invoice')"
        )
    staged.problems.extend(_debtor_conflicts(conn))
    return staged


def analyze(conn: Connection, *tables: str) -> None:
    """Fresh planner statistics on PostgreSQL. Its autovacuum never analyses temporary tables, and analyses
    the business tables only a while after a large import; without statistics it plans the joins of
    reconcile as if the tables were empty (nested loops over a million rows). SQLite plans well without."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table}")


def _duplicate_numbers(conn: Connection, blocked: set[tuple[str, str]]) -> Iterable[Problem]:
    """Every copy of an invoice number that occurs twice in the snapshot is an error ("must be unique")."""
    rows = conn.exec_driver_sql(
        "SELECT number, line, debtor_code FROM stage_invoices WHERE number IN "
        "(SELECT number FROM stage_invoices GROUP BY number HAVING COUNT(*) > 1) ORDER BY number, line"
    ).all()
    lines: dict[str, list[int]] = {}
    for number, line, debtor_code in rows:
        lines.setdefault(number, []).append(line)
        blocked.add(("invoice", number))
        blocked.add(("debtor", debtor_code))
    for number, found in lines.items():
        listed = ", ".join(str(n) for n in found)
        for line in found:
            yield error(
                "duplicate_invoice_number",
                f"Invoice numbers must be unique: invoice {number} occurs on lines {listed}",
                line,
                "invoice_number",
            )


def _debtor_conflicts(conn: Connection) -> Iterable[Problem]:
    rows = conn.exec_driver_sql(
        "SELECT v.code, MIN(v.line), d.line FROM stage_debtor_versions v JOIN stage_debtors d ON d.code = v.code "
        "GROUP BY v.code, d.line HAVING COUNT(DISTINCT v.fingerprint) > 1 ORDER BY d.line"
    ).all()
    for code, first, last in rows:
        yield warning(
            "conflicting_debtor_data",
            f"debtor {code} has different debtor data on several rows (first on line {first}); "
            f"the last row, line {last}, wins",
            last,
            "debtor_code",
        )
