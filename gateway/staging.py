"""Staging: stream a snapshot into temporary tables and run the checks that need the whole snapshot.

A snapshot can hold a million rows; it is never held in memory. Its entries go, in chunks, into
temporary tables of the run's own connection, where the file-wide rules are set operations:
an invoice number twice in one snapshot is an error on every copy; one debtor code with conflicting
data is a warning and the last row wins; blocked keys (rows with errors, ignored items) trump staged rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.records import Problem, Snapshot, error, warning
from gateway.stage_rows import STAGED_INVOICE_FIELDS, Batch, LocalRows, RowSource
from gateway.stage_rows import StagePolicy as StagePolicy  # re-exported: staging's callers build it
from gateway.store import bulk_insert
from gateway.tables import debtor_columns, invoices

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
# Staged rows that change a stored invoice (invoice_id) or are new (NULL), found batch by batch while the
# file is read (gateway.batchwise).
stage_changed = sa.Table(
    "stage_changed",
    stage_metadata,
    sa.Column("invoice_id", sa.Integer),
    sa.Column("stage_rowid", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
# The stored invoices that staged rows matched, each once, and whether it was open: a later import's proof,
# batch by batch, that no number is staged twice and that no open invoice is missing (gateway.batchwise).
stage_matched = sa.Table(
    "stage_matched",
    stage_metadata,
    sa.Column("invoice_id", sa.Integer, primary_key=True),
    sa.Column("open", sa.Boolean, nullable=False),
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

_ONE_VERSION_EACH = "SELECT count(*) = count(DISTINCT code) FROM stage_debtor_versions"


@dataclass(frozen=True)
class Known:
    """What is proved about the whole stage before its checks, so that they can be skipped: no invoice
    number is staged twice (``BatchWork``); no debtor has two versions (``one_version_per_debtor``)."""

    unique_numbers: bool = False
    one_version_per_debtor: bool = False


@dataclass
class Staged:
    """The outcome of staging: file-wide problems found, rows left out on purpose, and what was known."""

    problems: list[Problem] = field(default_factory=list)
    ignored: int = 0
    known: Known = Known()

    @property
    def debtors(self) -> sa.Table:
        """The table with each staged debtor's data as of its last row: its versions when each has only one."""
        return stage_debtor_versions if self.known.one_version_per_debtor else stage_debtors


def create_stage(conn: Connection) -> None:
    drop_stage(conn)
    stage_metadata.create_all(conn)


def drop_stage(conn: Connection) -> None:
    for table in reversed(stage_metadata.sorted_tables):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")


def discard_stage(conn: Connection) -> None:
    """Done with the stage. On SQLite the connection leaves the pool and is closed with the transaction:
    its temporary database goes with it at once, where dropping a million staged rows takes a second.
    (``create_stage`` drops any stage a reused connection still has.)"""
    if conn.dialect.name == "sqlite":
        conn.detach()
    else:
        drop_stage(conn)


def stage_snapshot(conn: Connection, snapshot: Snapshot, policy: StagePolicy) -> Staged:
    """Stream ``snapshot.entries`` into the stage tables, then apply the file-wide rules."""
    return stage_source(conn, LocalRows(snapshot, policy, naive_utc(conn)))


def naive_utc(conn: Connection | Engine) -> bool:
    """Whether the driver takes timestamps as naive UTC (see ``gateway.tables.UTCDateTime``)."""
    return conn.dialect.name == "sqlite"


class BatchWork(Protocol):
    """Work done on each batch as soon as it is staged (``gateway.batchwise``)."""

    def after_batch(self, conn: Connection) -> None: ...

    def unique_numbers(self, conn: Connection) -> bool:
        """Once every batch is staged: whether the work proved that no invoice number is staged twice."""
        ...

    def one_version_per_debtor(self, conn: Connection) -> bool:
        """Once every batch is staged: whether no debtor code has two versions (``one_version_per_debtor``)."""
        ...


def stage_source(conn: Connection, source: RowSource, work: BatchWork | None = None) -> Staged:
    """Stream the source's rows into the stage tables, then apply the file-wide rules. ``work`` runs after
    each batch is staged."""
    create_stage(conn)
    for batch in source.batches():
        stage_batch(conn, batch)
        if work is not None:
            work.after_batch(conn)
    snapshot = source.snapshot
    blocked = {("invoice", n) for n in source.blocked_invoices}
    blocked.update(("invoice", n) for n in snapshot.blocked_invoices)
    blocked.update(("debtor", c) for c in snapshot.blocked_debtors)
    return finish_stage(conn, blocked, source.ignored, proved(conn, work))


def proved(conn: Connection, work: BatchWork | None) -> Known:
    """What is known of the whole stage once every batch is staged: what the batch work proved, if any."""
    if work is None:
        return Known(False, one_version_per_debtor(conn))
    return Known(work.unique_numbers(conn), work.one_version_per_debtor(conn))


def one_version_per_debtor(conn: Connection) -> bool:
    """Whether no debtor code has two rows in ``stage_debtor_versions`` (its rows are together and its data
    the same on each, as files usually have them). One count over the versions: ~0.05 s for the 200k debtors
    of a 1M-row file, where the last-version table and the conflict query that it can save took ~0.9 s.
    (Told by the rows as they were converted, it cost the parse worker ~16 MB for a set of the codes.)"""
    return bool(conn.exec_driver_sql(_ONE_VERSION_EACH).scalar())


def stage_batch(conn: Connection, batch: Batch) -> None:
    """Write one batch of stage rows (the stage tables exist: ``create_stage``)."""
    invoice_rows, version_rows = batch
    bulk_insert(conn, "stage_invoices", INVOICE_STAGE_COLUMNS, invoice_rows)
    bulk_insert(conn, "stage_debtor_versions", VERSION_STAGE_COLUMNS, version_rows)


def finish_stage(conn: Connection, blocked: set[tuple[str, str]], ignored: int, known: Known) -> Staged:
    """The file-wide rules, once every row is staged. ``blocked``: (kind, key) pairs that get no update.

    What ``known`` says holds is not checked again (for a clean first import of 1M rows: the stage index,
    the duplicate query, the last debtor versions and the conflict query, ~1.9 s). With unique numbers there
    is no stage index yet (the closures make it if they are needed: ``index_stage_numbers``); with one version
    per debtor ``stage_debtors`` stays empty (see ``Staged.debtors``).
    """
    staged = Staged(ignored=ignored, known=known)
    if not known.unique_numbers:
        index_stage_numbers(conn)
    analyze(conn, "stage_invoices", "stage_debtor_versions")
    if not known.one_version_per_debtor:
        conn.exec_driver_sql(_LAST_VERSIONS)
    if not known.unique_numbers:
        staged.problems.extend(_duplicate_numbers(conn, blocked))
    bulk_insert(conn, "stage_blocked", ["kind", "key"], sorted(blocked))
    analyze(conn, "stage_debtors", "stage_blocked")
    if any(kind == "invoice" for kind, _ in blocked):
        conn.exec_driver_sql(
            "DELETE FROM stage_invoices WHERE number IN (SELECT key FROM stage_blocked WHERE kind = 'invoice')"
        )
    if not known.one_version_per_debtor:
        staged.problems.extend(_debtor_conflicts(conn))
    return staged


def index_stage_numbers(conn: Connection) -> None:
    """The index of the staged invoice numbers, for the duplicate check and the closures (once per stage)."""
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_stage_invoices_number ON stage_invoices (number)")


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
