"""The set-based statements of reconcile that staging's batches and the whole stage share: new debtors, new
invoices and the invoices a staged row changes. Built here, executed by ``gateway.apply`` (after the last
row) and ``gateway.batchwise`` (per batch, SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from gateway.reconcile import MUTABLE_INVOICE_FIELDS
from gateway.records import DEBTOR_DATA_FIELDS
from gateway.staging import stage_invoices
from gateway.tables import debtors, invoices


@dataclass(frozen=True)
class RunContext:
    administration_id: int
    run_id: int
    now: datetime
    today: date


def insert_new(dialect: str, table: sa.Table, columns: list[str], select: sa.Select[Any], key: list[str]) -> sa.Insert:
    """INSERT … SELECT of the rows whose key is not stored yet (its rowcount: the number inserted).

    ``ON CONFLICT DO NOTHING`` rather than ``WHERE NOT EXISTS (SELECT … FROM table)``: an anti-join against
    the table being filled is planned as a nested loop when its statistics say it is empty (PostgreSQL),
    which turns a first import quadratic.

    On SQLite ``INSERT OR IGNORE``, the same for the one unique ``key`` these tables have besides the rowid.
    A statement that may fail halfway (a NOT NULL column, an immediate foreign key) makes SQLite copy each
    page it changes to a statement journal first, so that it can undo just that statement: for the batches of
    a 1M-row first import 1.4 GB of the 2.35 GB written, and a quarter of their CPU. With OR IGNORE and the
    import's foreign keys unchecked (``store.transaction(bulk=True)``) no statement can fail halfway and the
    journal goes. OR IGNORE would also skip a row with a NULL in a NOT NULL column: none can come, as every
    such column is a literal here or NOT NULL in the staged table it is read from.
    """
    statement: sa.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).from_select(columns, select).on_conflict_do_nothing(index_elements=key)
    else:
        statement = sa.insert(table).prefix_with("OR IGNORE").from_select(columns, select)
    # SQLAlchemy keeps the count of an INSERT only when asked to.
    return statement.execution_options(preserve_rowcount=True)


def debtor_changed(staged: sa.Table | sa.Alias, stored: sa.Table | sa.Alias) -> sa.ColumnElement[bool]:
    """A staged debtor changes the stored one: a delivered field differs (an empty cell is 'not delivered')."""
    return sa.or_(
        *(sa.and_(staged.c[f].is_not(None), staged.c[f].is_distinct_from(stored.c[f])) for f in DEBTOR_DATA_FIELDS)
    )


def new_debtors(dialect: str, ctx: RunContext, source: sa.Table, where: sa.ColumnElement[bool]) -> sa.Insert:
    """The debtors of ``source`` (stage_debtors, or stage_debtor_versions for a first import) not yet stored."""
    select = sa.select(
        sa.literal(ctx.administration_id),
        source.c.code,
        *(source.c[f] for f in DEBTOR_DATA_FIELDS),
        sa.literal(ctx.run_id),
        sa.literal(ctx.run_id),
    ).where(where)
    columns = ["administration_id", "code", *DEBTOR_DATA_FIELDS, "created_run_id", "updated_run_id"]
    return insert_new(dialect, debtors, columns, select, ["administration_id", "code"])


def new_invoices(
    dialect: str, ctx: RunContext, where: sa.ColumnElement[bool], *, skip_stored: bool = False
) -> sa.Insert:
    """The staged invoices (``where``) not yet stored, with their debtor's id, status and load time."""
    s, d, i = stage_invoices, debtors, invoices
    copied = [c for c in s.columns if c.name not in ("line", "debtor_code")]
    status = sa.case((s.c.amount_open_cents == 0, "paid"), else_="open")
    closed_at = sa.case((s.c.amount_open_cents == 0, sa.literal(ctx.now, i.c.closed_at.type)), else_=None)
    select = (
        sa.select(
            sa.literal(ctx.administration_id),
            d.c.id,
            *copied,
            status,
            sa.literal(ctx.now, i.c.loaded_at.type),
            closed_at,
            sa.literal(ctx.run_id),
            sa.literal(ctx.run_id),
        )
        .select_from(s.join(d, sa.and_(d.c.administration_id == ctx.administration_id, d.c.code == s.c.debtor_code)))
        .where(where)
    )
    if skip_stored:
        # Skip the stored numbers before the debtor join. A re-import of 1M stored rows took 1.3 s through
        # the upsert's conflict path and 0.7 s this way; into an empty administration the probe only costs
        # (+1.3 s for 1M new rows). Not on PostgreSQL: see ``insert_new``.
        stored = sa.select(i.c.id).where(i.c.administration_id == ctx.administration_id, i.c.number == s.c.number)
        select = select.where(~stored.exists())
    columns = [
        "administration_id",
        "debtor_id",
        *(c.name for c in copied),
        "status",
        "loaded_at",
        "closed_at",
        "created_run_id",
        "updated_run_id",
    ]
    return insert_new(dialect, i, columns, select, ["administration_id", "number"])


def changed_invoices(
    ctx: RunContext, columns: Sequence[sa.ColumnElement[Any]], *, with_new: bool = False
) -> sa.Select[Any]:
    """``columns`` of the stored invoices that a staged row delivers with a difference (joined: ``stage_invoices``
    s, ``invoices`` i, ``debtors`` d). ``with_new``: also the staged rows of numbers not stored (their i and d
    are NULL); the outer join keeps the stage as the outer loop, as ``gateway.batchwise`` needs on SQLite."""
    s, i, d = stage_invoices, invoices, debtors
    frozen_differs = sa.or_(
        i.c.invoice_date != s.c.invoice_date,
        i.c.due_date != s.c.due_date,
        i.c.amount_total_cents != s.c.amount_total_cents,
        i.c.currency != s.c.currency,
        d.c.code != s.c.debtor_code,
    )
    mutable_differs = [sa.and_(s.c[f].is_not(None), s.c[f].is_distinct_from(i.c[f])) for f in MUTABLE_INVOICE_FIELDS]
    differs = sa.or_(i.c.amount_open_cents != s.c.amount_open_cents, frozen_differs, *mutable_differs)
    stored = sa.and_(i.c.administration_id == ctx.administration_id, i.c.number == s.c.number)
    if with_new:
        joined = s.outerjoin(i, stored).outerjoin(d, d.c.id == i.c.debtor_id)
        return sa.select(*columns).select_from(joined).where(sa.or_(i.c.id.is_(None), differs))
    return sa.select(*columns).select_from(s.join(i, stored).join(d, d.c.id == i.c.debtor_id)).where(differs)
