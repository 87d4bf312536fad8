"""The first import into an empty administration, on SQLite: each staged batch goes on into the business
tables while the rest of the file is still being read.

Into an administration without debtors and invoices a snapshot can only create: nothing is stored to
compare, update or close, so no guard can hold it. Reconcile would copy the whole stage into ``debtors``
and ``invoices`` after the last row, in one ``INSERT … SELECT`` that the importing process runs alone (for
1M rows, a third of the import while the parse worker's core idles). Here the same ``INSERT … SELECT``
runs on each batch as soon as it is staged, overlapping the parse of the next one. What only the whole
file can tell is settled afterwards, so that the result is the one of the staged path exactly:

- an invoice number that the file-wide rules blocked (a duplicate number, a row with errors, an ignored
  item) is deleted again: the first copy of a duplicate was inserted, the later ones were conflicts;
- a debtor whose data changed from one row to another gets the data of its last row ("the last row wins"),
  where it was created from its first.

SQLite only: batches are told apart by the stage tables' ``rowid``. PostgreSQL keeps the staged path.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.records import DEBTOR_DATA_FIELDS
from gateway.staging import stage_blocked, stage_debtor_versions, stage_debtors, stage_invoices
from gateway.tables import debtors, invoices


@dataclass
class FirstImport:
    """Inserts the staged batches of a first import; ``settle`` once the stage is finished."""

    administration_id: int
    insert_debtors: sa.Insert
    insert_invoices: sa.Insert
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

    def settle(self, conn: Connection) -> tuple[int, int]:
        """After the file-wide rules (``finish_stage``): drop blocked invoices, give debtors their last data.
        Returns the debtors and invoices created."""
        deleted = conn.execute(
            invoices.delete().where(
                invoices.c.administration_id == self.administration_id,
                invoices.c.number.in_(sa.select(stage_blocked.c.key).where(stage_blocked.c.kind == "invoice")),
            )
        ).rowcount
        s, d = stage_debtors, debtors
        conn.execute(
            d.update()
            .values({f: s.c[f] for f in DEBTOR_DATA_FIELDS})
            .where(d.c.administration_id == self.administration_id, d.c.code == s.c.code)
            .where(sa.or_(*(s.c[f].is_distinct_from(d.c[f]) for f in DEBTOR_DATA_FIELDS)))
        )
        return self.debtors_inserted, self.invoices_inserted - deleted


def _insert_since(conn: Connection, insert: sa.Insert, table: sa.Table, seen: int) -> tuple[int, int]:
    """Run ``insert`` (an INSERT … SELECT from ``table`` filtered by ``:seen``) on the rows after rowid
    ``seen``; the new last rowid and the number of rows inserted."""
    last = conn.exec_driver_sql(f"SELECT max(rowid) FROM {table.name}").scalar()
    if last is None or last <= seen:
        return seen, 0
    inserted = conn.execute(insert, {"seen": seen, "last": last}).rowcount
    return last, inserted


def rowid_between(table: sa.Table) -> sa.ColumnElement[bool]:
    """The rows of ``table`` staged after ``:seen`` up to ``:last`` (bound at execution)."""
    rowid: sa.ColumnElement[int] = sa.literal_column(f"{table.name}.rowid", sa.Integer)
    return sa.and_(rowid > sa.bindparam("seen"), rowid <= sa.bindparam("last"))


def is_empty(conn: Connection, administration_id: int) -> bool:
    """No debtors and no invoices stored for the administration."""
    return not any(
        conn.execute(sa.select(sa.exists().where(table.c.administration_id == administration_id))).scalar()
        for table in (debtors, invoices)
    )
