"""Apply a staged snapshot to the business tables, inside the caller's transaction.

The database finds the candidates (set operations over the stage tables); the pure functions of
``gateway.reconcile`` decide what each becomes. The guards are decided before anything is written, so
a held snapshot leaves the business tables untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.batchwise import Changes, FirstImport, Stored, batchwise_work, rowid, stored
from gateway.config import GuardSettings
from gateway.documents import link_waiting_documents
from gateway.ignore import IgnoreLists
from gateway.reconcile import (
    MUTABLE_INVOICE_FIELDS,
    Counts,
    IncomingInvoice,
    StoredInvoice,
    decide_guard,
    decide_invoice_update,
)
from gateway.reconcile_sql import RunContext as RunContext  # re-exported: the pipeline's callers build it
from gateway.reconcile_sql import changed_invoices, debtor_changed, new_debtors, new_invoices
from gateway.records import DEBTOR_DATA_FIELDS, Problem, notice
from gateway.stage_rows import RowSource
from gateway.staging import (
    Staged,
    analyze,
    index_stage_numbers,
    stage_blocked,
    stage_changed,
    stage_closures,
    stage_invoices,
    stage_source,
)
from gateway.store import bulk_insert, driver_datetime, execute_many
from gateway.tables import debtors, invoices, payments

PAGE = 5_000


@dataclass
class Applied:
    """The outcome of reconcile: ``held`` carries the guard's reason and nothing was written."""

    counts: Counts
    held: str | None = None
    problems: list[Problem] = field(default_factory=list)


def reconcile_staged(
    conn: Connection,
    ctx: RunContext,
    *,
    rows: int,
    explicit_empty: bool,
    guards: GuardSettings | None,
    ignore: IgnoreLists,
    state: Stored,
    staged: Staged,
    batchwise: FirstImport | Changes | None = None,
) -> Applied:
    """Apply the staged snapshot. ``guards=None`` applies without guards (an operator's release).
    ``state``: what the administration had stored before the run (``batchwise.stored``). ``staged``: where
    the staged debtors are (``Staged.debtors``). ``batchwise``: part
    of the work was done on each batch as it was staged (``gateway.batchwise``)."""
    counts = Counts(rows=rows)
    if isinstance(batchwise, FirstImport):  # nothing was stored: nothing to hold, compare or close
        counts.debtors_created, counts.invoices_created = batchwise.settle(conn, staged.known.one_version_per_debtor)
        return Applied(counts, problems=_link_documents(conn, ctx, counts))
    analyze(conn, "invoices", "debtors")
    listed = isinstance(batchwise, Changes)
    open_count = _open_count(conn, ctx) if guards is not None or listed else 0
    if isinstance(batchwise, Changes) and batchwise.nothing_missing(conn, open_count):
        to_close = 0
    else:
        to_close = _stage_closures(conn, ctx, ignore)
    if guards is not None:
        reason = decide_guard(
            rows=rows, explicit_empty=explicit_empty, open_count=open_count, to_close=to_close, guards=guards
        )
        if reason:
            return Applied(counts, held=reason)
    invoices_before = state == "invoices"
    finds = batchwise.debtors if isinstance(batchwise, Changes) else None  # what the batches found of debtors
    if finds is None or finds.new:
        counts.debtors_created = _insert_new_debtors(conn, ctx, staged.debtors)
    if counts.debtors_created:
        analyze(conn, "debtors")  # the invoices about to be inserted join the new debtors
    # Not into an empty administration (every staged debtor was just created as delivered: nothing to update).
    if state != "empty" and (finds is None or finds.changed):
        counts.debtors_updated = _update_debtors(conn, ctx, staged.debtors)
    problems = _update_invoices(conn, ctx, counts, listed) if invoices_before else []
    counts.invoices_created = _insert_new_invoices(conn, ctx, invoices_before, listed)
    problems.extend(_link_documents(conn, ctx, counts))
    counts.invoices_closed += _close_missing(conn, ctx, to_close)
    return Applied(counts, problems=problems)


def import_rows(
    conn: Connection,
    ctx: RunContext,
    source: RowSource,
    *,
    guards: GuardSettings | None,
    ignore: IgnoreLists,
    batchwise: bool = True,
) -> tuple[Staged, Applied]:
    """Stage a snapshot's rows and apply them: the whole import inside ``conn``'s transaction.
    ``batchwise=False`` does all the work after the last row (the tests compare both)."""
    state = stored(conn, ctx.administration_id)  # staging writes no business table: still true after it
    work = batchwise_work(conn, ctx, state) if batchwise else None
    staged = stage_source(conn, source, work)
    snapshot = source.snapshot
    applied = reconcile_staged(
        conn,
        ctx,
        rows=snapshot.rows,
        explicit_empty=snapshot.explicit_empty,
        guards=guards,
        ignore=ignore,
        state=state,
        staged=staged,
        batchwise=work,
    )
    applied.counts.ignored = staged.ignored
    return staged, applied


def _link_documents(conn: Connection, ctx: RunContext, counts: Counts) -> list[Problem]:
    """Documents that arrived before their invoice, linked to the invoices this run created."""
    if not counts.invoices_created:
        return []
    linked = link_waiting_documents(conn, ctx.administration_id, ctx.run_id, ctx.now)
    if not linked:
        return []
    return [notice("documents_linked", f"{linked} earlier document(s) linked to new invoices")]


def _open_count(conn: Connection, ctx: RunContext) -> int:
    i = invoices
    query = sa.select(sa.func.count()).where(i.c.administration_id == ctx.administration_id, i.c.status == "open")
    return int(conn.execute(query).scalar_one())


def _stage_closures(conn: Connection, ctx: RunContext, ignore: IgnoreLists) -> int:
    """Stage the open invoices that the snapshot no longer has (less blocked and ignored ones)."""
    index_stage_numbers(conn)  # each open invoice looks its number up in the stage
    i, d = invoices, debtors
    query = (
        sa.select(i.c.id, i.c.amount_open_cents, i.c.number, d.c.code, i.c.payment_condition)
        .select_from(i.join(d, d.c.id == i.c.debtor_id))
        .where(
            i.c.administration_id == ctx.administration_id,
            i.c.status == "open",
            ~sa.exists().where(stage_invoices.c.number == i.c.number),
            ~sa.exists().where(stage_blocked.c.kind == "invoice", stage_blocked.c.key == i.c.number),
        )
        .order_by(i.c.id)
    )
    total = 0
    after = 0
    while True:
        page = conn.execute(query.where(i.c.id > after).limit(PAGE)).all()
        if not page:
            return total
        after = page[-1][0]
        keep = [(row[0], row[1]) for row in page if ignore.empty or not ignore.is_ignored(row[2], row[3], row[4])]
        bulk_insert(conn, "stage_closures", ["invoice_id", "amount_open_cents"], keep)
        total += len(keep)


def _not_blocked_debtor(code: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return ~sa.exists().where(stage_blocked.c.kind == "debtor", stage_blocked.c.key == code)


def _insert_new_debtors(conn: Connection, ctx: RunContext, staged_debtors: sa.Table) -> int:
    return conn.execute(new_debtors(conn.dialect.name, ctx, staged_debtors, sa.true())).rowcount


def _update_debtors(conn: Connection, ctx: RunContext, staged_debtors: sa.Table) -> int:
    """Delivered debtor fields replace the stored ones; an empty cell is 'not delivered' and keeps it."""
    s, d = staged_debtors, debtors
    statement = (
        d.update()
        .values({f: sa.func.coalesce(s.c[f], d.c[f]) for f in DEBTOR_DATA_FIELDS} | {"updated_run_id": ctx.run_id})
        .where(d.c.administration_id == ctx.administration_id, d.c.code == s.c.code)
        .where(_not_blocked_debtor(s.c.code), debtor_changed(s, d))
    )
    return conn.execute(statement).rowcount


def _insert_new_invoices(conn: Connection, ctx: RunContext, stored_before: bool, listed: bool) -> int:
    """``stored_before``: the administration had invoices before this run. ``listed``: ``stage_changed``
    lists the staged rows of numbers not stored (``gateway.batchwise``)."""
    dialect = conn.dialect.name
    if listed:
        new = sa.select(stage_changed.c.stage_rowid).where(stage_changed.c.invoice_id.is_(None))
        return conn.execute(new_invoices(dialect, ctx, rowid(stage_invoices).in_(new))).rowcount
    statement = new_invoices(dialect, ctx, sa.true(), skip_stored=stored_before and dialect == "sqlite")
    return conn.execute(statement).rowcount


_UPDATE_INVOICE = (
    "UPDATE invoices SET amount_open_cents = ?, status = ?, closed_at = CASE WHEN ? = 'paid' THEN "
    "COALESCE(closed_at, ?) ELSE NULL END, "
    + ", ".join(f"{f} = COALESCE(?, {f})" for f in MUTABLE_INVOICE_FIELDS)
    + ", updated_run_id = ? WHERE id = ?"
)


def _update_invoices(conn: Connection, ctx: RunContext, counts: Counts, found: bool) -> list[Problem]:
    """Stored invoices that the snapshot delivers with a difference: decide each, write in batches.
    ``found``: ``stage_changed`` lists them already (``gateway.batchwise``); its rows of blocked numbers
    have no stage row any more."""
    s, i, d = stage_invoices, invoices, debtors
    columns = (
        i.c.id,
        i.c.number,
        d.c.code,
        i.c.invoice_date,
        i.c.due_date,
        i.c.amount_total_cents,
        i.c.currency,
        i.c.amount_open_cents,
        i.c.status,
        *(i.c[f] for f in MUTABLE_INVOICE_FIELDS),
        s.c.line,
        s.c.debtor_code,
        s.c.invoice_date,
        s.c.due_date,
        s.c.amount_total_cents,
        s.c.currency,
        s.c.amount_open_cents,
        *(s.c[f] for f in MUTABLE_INVOICE_FIELDS),
    )
    if found:
        c = stage_changed
        query = sa.select(*columns).select_from(
            c.join(s, rowid(s) == c.c.stage_rowid).join(i, i.c.id == c.c.invoice_id).join(d, d.c.id == i.c.debtor_id)
        )
    else:
        query = changed_invoices(ctx, columns)
    query = query.order_by(i.c.id)
    m = len(MUTABLE_INVOICE_FIELDS)
    now = driver_datetime(conn, ctx.now)
    sent_at = MUTABLE_INVOICE_FIELDS.index("sent_at")  # the one timestamp among the mutable fields
    problems: list[Problem] = []
    after = 0
    while True:
        page = conn.execute(query.where(i.c.id > after).limit(PAGE)).all()
        if not page:
            return problems
        after = page[-1][0]
        updates: list[tuple[Any, ...]] = []
        paid: list[tuple[Any, ...]] = []
        for row in page:
            stored = StoredInvoice(*_take(row, 0, 9), mutable=_take(row, 9, 9 + m))  # type: ignore[misc]
            incoming = IncomingInvoice(
                row[9 + m], stored.number, *_take(row, 10 + m, 16 + m), mutable=_take(row, 16 + m, len(row))
            )  # type: ignore[misc]
            decision = decide_invoice_update(stored, incoming)
            problems.extend(decision.warnings)
            if decision.payment_cents:
                paid.append((stored.id, decision.payment_cents, ctx.today, ctx.run_id))
            if decision.changed:
                counts.invoices_updated += 1
                counts.invoices_closed += decision.closed
                status = decision.values.get("status", stored.status)
                mutable = list(incoming.mutable)
                mutable[sent_at] = driver_datetime(conn, mutable[sent_at])
                updates.append((incoming.amount_open_cents, status, status, now, *mutable, ctx.run_id, stored.id))
        execute_many(conn, _UPDATE_INVOICE, updates)
        bulk_insert(conn, "payments", ["invoice_id", "amount_cents", "paid_on", "run_id"], paid)


def _take(row: Sequence[Any], start: int, stop: int) -> tuple[Any, ...]:
    return tuple(row[start:stop])


def _close_missing(conn: Connection, ctx: RunContext, to_close: int) -> int:
    """Invoices missing from the snapshot are paid: a payment of what was open, then status paid."""
    if not to_close:
        return 0
    c = stage_closures
    conn.execute(
        payments.insert().from_select(
            ["invoice_id", "amount_cents", "paid_on", "run_id"],
            sa.select(
                c.c.invoice_id, c.c.amount_open_cents, sa.literal(ctx.today, sa.Date), sa.literal(ctx.run_id)
            ).where(c.c.amount_open_cents != 0),
        )
    )
    result = conn.execute(
        invoices.update()
        .where(invoices.c.id.in_(sa.select(c.c.invoice_id)))
        .values(status="paid", amount_open_cents=0, closed_at=ctx.now, updated_run_id=ctx.run_id)
    )
    return result.rowcount
