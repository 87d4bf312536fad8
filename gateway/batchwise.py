"""Reconcile work done on each staged batch while the rest of the file is still being read (SQLite).

A large file is parsed in a worker process while this one stages its rows; the work that reconcile does
after the last row runs on one core while the worker's core idles (for 1M rows, a third of the import).
Part of it needs only the rows at hand and the stored state, which nothing else changes during the run
(the transaction holds SQLite's write lock). That part runs on each batch as soon as it is staged:

- ``FirstImport``: into an administration without debtors and invoices a snapshot can only create, so no
  guard can hold it and there is nothing to compare or close. Each batch's new debtors and invoices are
  inserted with reconcile's own ``INSERT … SELECT``. What only the whole file can tell is settled after the
  file-wide rules: an invoice number that they blocked (a duplicate, a row with errors, an ignored item) is
  deleted again (the first copy of a duplicate was inserted, the later ones were conflicts); a debtor whose
  data changed from one row to another gets the data of its last row, where it was created from its first.
- ``Changes``: in an administration with invoices, each batch's rows that change a stored invoice, and
  those of numbers not stored, are listed in ``stage_changed`` (one outer join per batch with
  ``invoices``), and each stored invoice that a row matched is recorded once in ``stage_matched``. When
  the rows matched as many open invoices as there are, none is to be closed (``nothing_missing``); when
  none was matched twice and no two new rows share a number, no number is staged twice (``unique_numbers``,
  which spares the stage index and the duplicate query). After the last row reconcile decides and writes
  the changed ones and inserts the new ones from that list, instead of joining the whole stage with
  ``invoices`` twice. Rows of numbers blocked later drop out there by themselves: the file-wide rules
  delete them from the stage. Nothing is written to the business tables before the guards have been
  decided, as on the staged path.

The result is the staged path's exactly (the tests compare both for every batch cut). SQLite only: batches
are told apart by the stage tables' ``rowid``; PostgreSQL does all of it after the last row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.reconcile_sql import (
    RunContext,
    changed_invoices,
    debtor_changed,
    insert_new,
    new_debtors,
    new_invoices,
)
from gateway.records import DEBTOR_DATA_FIELDS
from gateway.staging import one_version_per_debtor as count_one_version_per_debtor
from gateway.staging import (
    stage_blocked,
    stage_changed,
    stage_debtor_versions,
    stage_debtors,
    stage_invoices,
    stage_matched,
)
from gateway.tables import debtors, invoices

Stored = Literal["empty", "debtors", "invoices"]


@dataclass
class FirstImport:
    """Inserts the staged batches of a first import; ``settle`` once the stage is finished."""

    administration_id: int
    insert_debtors: sa.Executable
    insert_invoices: sa.Executable
    debtors_inserted: int = 0
    invoices_inserted: int = 0
    _versions_seen: int = 0
    _invoices_seen: int = 0

    def after_batch(self, conn: Connection) -> None:
        """Insert the debtors and invoices of the rows staged since the last call."""
        seen, inserted = _insert_since(conn, self.insert_debtors, stage_debtor_versions, self._versions_seen)
        self._versions_seen, self.debtors_inserted = seen, self.debtors_inserted + inserted
        seen, inserted = _insert_since(conn, self.insert_invoices, stage_invoices, self._invoices_seen)
        self._invoices_seen, self.invoices_inserted = seen, self.invoices_inserted + inserted

    def unique_numbers(self, conn: Connection) -> bool:
        """Into an empty administration every staged row that created an invoice has a number of its own: if
        as many invoices were created as rows were staged, no number is staged twice. (The stage tables are
        new and nothing is deleted while rows are staged, so the last rowid is the number of rows.)"""
        return self.invoices_inserted == self._invoices_seen

    def one_version_per_debtor(self, conn: Connection) -> bool:
        """Likewise each staged debtor version created a debtor unless its code was created before: as many
        debtors as versions, and no code has two (without the count over the versions after the last row)."""
        return self.debtors_inserted == self._versions_seen

    def settle(self, conn: Connection, one_version_per_debtor: bool) -> tuple[int, int]:
        """After the file-wide rules (``finish_stage``): drop blocked invoices, give debtors their last data
        (unless each was created from its only version). Returns the debtors and invoices created."""
        deleted = conn.execute(
            invoices.delete().where(
                invoices.c.administration_id == self.administration_id,
                invoices.c.number.in_(sa.select(stage_blocked.c.key).where(stage_blocked.c.kind == "invoice")),
            )
        ).rowcount
        if not one_version_per_debtor:
            s, d = stage_debtors, debtors
            conn.execute(
                d.update()
                .values({f: s.c[f] for f in DEBTOR_DATA_FIELDS})
                .where(d.c.administration_id == self.administration_id, d.c.code == s.c.code)
                .where(sa.or_(*(s.c[f].is_distinct_from(d.c[f]) for f in DEBTOR_DATA_FIELDS)))
            )
        return self.debtors_inserted, self.invoices_inserted - deleted


# Per batch: how many rows stage_changed has now and how many of those since the last batch are new numbers.
_LISTED_SINCE = "SELECT max(rowid), count(*) - count(invoice_id) FROM stage_changed WHERE rowid > ?"
# Once, if rows of numbers not stored were staged: whether two of them share a number.
_NEW_TWICE = (
    "SELECT count(*) > count(DISTINCT s.number) FROM stage_changed c "
    "JOIN stage_invoices s ON s.rowid = c.stage_rowid WHERE c.invoice_id IS NULL"
)


@dataclass
class DebtorFinds:
    """What the batches' debtor versions hold: versions of debtors not stored, and versions that change a stored
    debtor. When there are none, reconcile skips inserting new debtors or updating them after the last row
    (200k debtors: ~0.3 s each of the importing process, while the parse worker is done)."""

    count: sa.Select[tuple[int, int]]
    new: int = 0
    changed: int = 0
    _seen: int = 0

    def after_batch(self, conn: Connection) -> None:
        seen = self._seen
        last = _staged_since(conn, stage_debtor_versions, seen)
        if last is None:
            return
        new, changed = conn.execute(self.count, {"seen": seen, "last": last}).one()
        self.new, self.changed, self._seen = self.new + new, self.changed + (changed or 0), last


@dataclass
class Changes:
    """Lists, batch by batch, the staged rows that change a stored invoice or are new (``find``: into
    stage_changed), and records each stored invoice that a staged row matched, once (``match``: into
    stage_matched, which ignores an invoice matched again)."""

    find: sa.Insert
    match: sa.Executable
    debtors: DebtorFinds
    matched_rows: int = 0  # staged rows whose number is stored
    matched: int = 0  # the stored invoices they matched (rows of stage_matched)
    new_rows: int = 0  # staged rows whose number is not stored
    _seen: int = 0
    _listed: int = 0

    def after_batch(self, conn: Connection) -> None:
        self.debtors.after_batch(conn)
        seen = self._seen
        self._seen, _ = _insert_since(conn, self.find, stage_invoices, seen)
        if self._seen == seen:
            return
        listed, new = conn.exec_driver_sql(_LISTED_SINCE, (self._listed,)).one()
        self._listed = listed or self._listed
        self.new_rows += new
        self.matched_rows += self._seen - seen - new
        self.matched += conn.execute(self.match, {"seen": seen, "last": self._seen}).rowcount

    def unique_numbers(self, conn: Connection) -> bool:
        """No number is staged twice: no stored invoice was matched by two rows, and no two rows of numbers
        not stored share one (``stage_changed`` lists those: usually few). Saves the stage index and the
        duplicate query after the last row (1M rows: ~0.5 s of the importing process, when the worker is done)."""
        if self.matched != self.matched_rows:
            return False
        return self.new_rows < 2 or not conn.exec_driver_sql(_NEW_TWICE).scalar()

    def one_version_per_debtor(self, conn: Connection) -> bool:
        return count_one_version_per_debtor(conn)

    def nothing_missing(self, conn: Connection, open_count: int) -> bool:
        """Whether every open stored invoice was delivered, so that none is to be closed: the staged rows
        matched as many open invoices as there are. Saves the scan of every open invoice against the stage
        after the last row (1M open invoices: ~0.5 s of the importing process alone)."""
        open_matched = conn.execute(sa.select(sa.func.count()).where(stage_matched.c.open)).scalar_one()
        return bool(open_matched == open_count)


def batchwise_work(conn: Connection, ctx: RunContext, state: Stored) -> FirstImport | Changes | None:
    """What can be done on each batch while the file is read (SQLite), given what the administration has
    ``stored``: all the inserts into an empty one, or listing the rows that change a stored invoice or are new."""
    if conn.dialect.name != "sqlite":
        return None
    if state == "empty":
        return FirstImport(
            ctx.administration_id,
            new_debtors("sqlite", ctx, stage_debtor_versions, rowid_between(stage_debtor_versions)),
            new_invoices("sqlite", ctx, rowid_between(stage_invoices)),
        )
    if state == "invoices":
        s, i = stage_invoices, invoices
        found = changed_invoices(ctx, (i.c.id, rowid(s)), with_new=True).where(rowid_between(s))
        stored_number = sa.and_(i.c.administration_id == ctx.administration_id, i.c.number == s.c.number)
        matched = sa.select(i.c.id, i.c.status == "open").select_from(s.join(i, stored_number)).where(rowid_between(s))
        return Changes(
            stage_changed.insert().from_select(["invoice_id", "stage_rowid"], found),
            insert_new("sqlite", stage_matched, ["invoice_id", "open"], matched, ["invoice_id"]),
            DebtorFinds(debtor_finds(ctx)),
        )
    return None


def debtor_finds(ctx: RunContext) -> sa.Select[tuple[int, int]]:
    """Of a batch's debtor versions: how many are of a debtor not stored, and how many change a stored one. An
    outer join keeps the batch as the outer loop (one lookup per version)."""
    v, d = stage_debtor_versions, debtors
    stored_code = sa.and_(d.c.administration_id == ctx.administration_id, d.c.code == v.c.code)
    new = sa.func.count() - sa.func.count(d.c.id)
    changed = sa.func.sum(sa.case((sa.and_(d.c.id.is_not(None), debtor_changed(v, d)), 1), else_=0))
    return sa.select(new, changed).select_from(v.outerjoin(d, stored_code)).where(rowid_between(v))


def _insert_since(conn: Connection, insert: sa.Executable, table: sa.Table, seen: int) -> tuple[int, int]:
    """Run ``insert`` (an INSERT … SELECT from ``table`` filtered by ``rowid_between``) on the rows after
    rowid ``seen``; the new last rowid and the number of rows inserted."""
    last = _staged_since(conn, table, seen)
    if last is None:
        return seen, 0
    inserted = conn.execute(insert, {"seen": seen, "last": last}).rowcount
    return last, inserted


def _staged_since(conn: Connection, table: sa.Table, seen: int) -> int | None:
    """The last rowid of ``table`` when rows were staged after rowid ``seen``, else None."""
    last = conn.exec_driver_sql(f"SELECT max(rowid) FROM {table.name}").scalar()
    return last if last is not None and last > seen else None


def rowid(table: sa.Table) -> sa.ColumnElement[int]:
    return sa.literal_column(f"{table.name}.rowid", sa.Integer)


def rowid_between(table: sa.Table) -> sa.ColumnElement[bool]:
    """The rows of ``table`` staged after ``:seen`` up to ``:last`` (bound at execution)."""
    return sa.and_(rowid(table) > sa.bindparam("seen"), rowid(table) <= sa.bindparam("last"))


def stored(conn: Connection, administration_id: int) -> Stored:
    """What the administration has stored: nothing, debtors only, or invoices (and so debtors)."""

    def has(table: sa.Table) -> bool:
        return bool(conn.execute(sa.select(sa.exists().where(table.c.administration_id == administration_id))).scalar())

    return "invoices" if has(invoices) else "debtors" if has(debtors) else "empty"
