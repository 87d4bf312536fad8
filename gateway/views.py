"""Read-only views for the operator commands, in the JSON shapes of CONTRACT.md."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from gateway.collection import decide_collectable
from gateway.config import Config
from gateway.interest import NoRate, interest_kind, statutory_interest
from gateway.plan import Decision
from gateway.reconcile import format_cents
from gateway.sendstate import Decided, decide_rows, invoice_query
from gateway.slots import local_day, make_calendar
from gateway.tables import administrations, deliveries, documents, invoices

PAGE = 2_000  # invoices decided per query round (bounded IN lists)
# The kinds of an invoice's linked documents, by the bit mask that the query computes (pdf 1, ubl 2).
DOCUMENT_KINDS: tuple[tuple[str, ...], ...] = ((), ("pdf",), ("ubl",), ("pdf", "ubl"))


def _document_mask() -> sa.ColumnElement[int]:
    def has(kind: str) -> sa.ColumnElement[int]:
        found = sa.exists().where(documents.c.invoice_id == invoices.c.id, documents.c.kind == kind)
        return sa.case((found, 1), else_=0)

    return has("pdf") + 2 * has("ubl")


def list_invoices(
    conn: Connection,
    config: Config | None = None,
    now: datetime | None = None,
    *,
    administration: str | None = None,
    status: str = "open",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Invoices with their plan: ``paused``, ``blocked`` (the reason the next message cannot go) and
    ``next_send``, decided exactly as the sender's next pass would. Without a configuration (a test's view
    of the stored data) there is no plan: ``blocked`` only says whether the kind policy sends it."""
    a, i = administrations, invoices
    query = (
        invoice_query()
        .add_columns(
            a.c.code.label("administration"), a.c.id.label("administration_id"), _document_mask().label("documents")
        )
        .join(a, a.c.id == i.c.administration_id)
        .order_by(a.c.code, i.c.due_date, i.c.number)
    )
    if administration:
        query = query.where(a.c.code == administration)
    if status != "all":
        query = query.where(i.c.status == status)
    if limit:
        query = query.limit(limit)
    rows = list(conn.execute(query).all())
    decided = _decide_by_administration(conn, config, now, rows) if config and now else {}
    collectable = _collectable(conn, now, config, rows) if config and now else {}
    out = []
    for r in rows:
        item = decided.get(r.id)
        kinds = DOCUMENT_KINDS[r.documents]
        is_collectable, why_not = collectable.get(r.id, (False, None))
        if config is None:
            plan: dict[str, Any] = {
                "paused": False,
                "blocked": None if r.send else "import_no_send",
                "next_send": None,
                "skipped": [],
            }
        else:
            plan = _plan_fields(item, configured=r.administration in config.administrations)
        out.append(
            {
                "administration": r.administration,
                "number": r.number,
                "debtor": r.debtor_code,
                "invoice_date": r.invoice_date.isoformat(),
                "due_date": r.due_date.isoformat(),
                "amount_total": format_cents(r.amount_total_cents),
                "amount_open": format_cents(r.amount_open_cents),
                "currency": r.currency,
                "status": r.status,
                "kind": r.kind,
                "loaded_at": r.loaded_at.isoformat(),
                **plan,
                "collectable": is_collectable,
                "collectable_reason": why_not,
                **_interest_fields(r, is_collectable, config, now),
                "document": kinds[0] if kinds else None,
                "documents": list(kinds),
            }
        )
    return out


def _decide_by_administration(
    conn: Connection, config: Config, now: datetime, rows: list[Row[Any]]
) -> dict[int, Decided]:
    by_admin: dict[str, list[Row[Any]]] = defaultdict(list)
    for r in rows:
        if r.status == "open" and r.administration in config.administrations:
            by_admin[r.administration].append(r)
    found: dict[int, Decided] = {}
    for code, group in by_admin.items():
        admin = config.administrations[code]
        cal = make_calendar(admin)
        for start in range(0, len(group), PAGE):
            page = group[start : start + PAGE]
            docs = {r.id: list(DOCUMENT_KINDS[r.documents]) for r in page}
            for item in decide_rows(conn, admin, page[0].administration_id, cal, page, now, documents=docs):
                found[item.row.id] = item
    return found


def _plan_fields(item: Decided | None, configured: bool) -> dict[str, Any]:
    if item is None:
        blocked = None if configured else "administration not configured"
        return {"paused": False, "blocked": blocked, "next_send": None, "skipped": []}
    decision: Decision = item.decision
    nxt = decision.next
    blocked = None
    if nxt is not None and nxt.state in ("held", "busy"):
        blocked = nxt.reason
    elif nxt is None and decision.skipped:
        blocked = decision.skipped[-1][1]
    return {
        "paused": item.holds.paused,
        "blocked": blocked,
        "next_send": None
        if nxt is None
        else {"kind": nxt.step.kind, "sequence": nxt.step.sequence, "scheduled_for": nxt.scheduled_for.isoformat()},
        "skipped": [{"kind": s.kind, "sequence": s.sequence, "reason": why} for s, why in decision.skipped],
    }


def _collectable(
    conn: Connection, now: datetime, config: Config, rows: list[Row[Any]]
) -> dict[int, tuple[bool, str | None]]:
    """(collectable, why not) of every open invoice of a configured administration (``decide_collectable``):
    the deadline of its sent final reminder and the open credit notes (open amount below zero) of its debtor."""
    open_rows = [r for r in rows if r.status == "open" and r.administration in config.administrations]
    open_ids = [r.id for r in open_rows]
    d = deliveries
    deadlines: dict[int, Any] = {}
    for start in range(0, len(open_ids), PAGE):
        deadlines.update(
            (invoice_id, deadline)
            for invoice_id, deadline in conn.execute(
                sa.select(d.c.invoice_id, d.c.deadline).where(
                    d.c.invoice_id.in_(open_ids[start : start + PAGE]),
                    d.c.kind == "final_reminder",
                    d.c.status == "sent",
                )
            )
        )
    credit_notes: dict[int, list[str]] = defaultdict(list)
    debtor_ids = sorted({r.debtor_id for r in open_rows if r.id in deadlines})
    credit = invoices.alias("credit")
    for start in range(0, len(debtor_ids), PAGE):
        for debtor_id, number in conn.execute(
            sa.select(credit.c.debtor_id, credit.c.number).where(
                credit.c.status == "open",
                credit.c.amount_open_cents < 0,
                credit.c.debtor_id.in_(debtor_ids[start : start + PAGE]),
            )
        ):
            credit_notes[debtor_id].append(number)
    today = {code: local_day(now, make_calendar(admin)) for code, admin in config.administrations.items()}
    return {
        r.id: decide_collectable(
            r.status, deadlines.get(r.id), today[r.administration], credit_notes.get(r.debtor_id, [])
        )
        for r in open_rows
    }


def _interest_fields(
    row: Row[Any], collectable: bool, config: Config | None, now: datetime | None
) -> dict[str, str | None]:
    """``interest_due`` (the statutory interest as of ``now``'s day) of a collectable invoice, or
    ``interest_note`` saying why it cannot be computed."""
    if not collectable or config is None or now is None:
        return {"interest_due": None, "interest_note": None}
    if not config.interest_rates:
        return {
            "interest_due": None,
            "interest_note": "no statutory interest rates configured ([[interest.statutory]])",
        }
    today = local_day(now, make_calendar(config.administrations[row.administration]))
    try:
        due = statutory_interest(
            Decimal(row.amount_open_cents) / 100,
            row.due_date,
            today,
            config.interest_rates,
            interest_kind(row.is_company),
        )
    except NoRate as exc:
        return {"interest_due": None, "interest_note": str(exc)}
    return {"interest_due": f"{due:.2f}", "interest_note": None}


def list_outbox(
    conn: Connection,
    config: Config,
    now: datetime,
    *,
    administration: str | None = None,
    status: str | None = None,
    limit: int | None = 1000,
) -> list[dict[str, Any]]:
    """Delivery rows (sending, sent, failed, unknown, …) and the planned next step of every open invoice
    (``scheduled`` or ``held``, with ``id`` null: it has no row until it is claimed)."""
    a, i, d = administrations, invoices, deliveries
    out: list[dict[str, Any]] = []
    if status not in ("held",):
        query = (
            sa.select(
                d.c.id,
                a.c.code,
                i.c.number,
                d.c.kind,
                d.c.sequence,
                d.c.scheduled_for,
                d.c.status,
                d.c.reason,
                d.c.sent_at,
                d.c.recipient,
                d.c.attempts,
                d.c.deadline,
            )
            .select_from(d.join(i, i.c.id == d.c.invoice_id).join(a, a.c.id == d.c.administration_id))
            .order_by(d.c.id.desc())
        )
        if administration:
            query = query.where(a.c.code == administration)
        if status:
            query = query.where(d.c.status.in_(("claimed", "sending") if status == "sending" else (status,)))
        if limit:
            query = query.limit(limit)
        out.extend(
            {
                "id": r.id,
                "administration": r.code,
                "invoice": r.number,
                "kind": r.kind,
                "sequence": r.sequence,
                "scheduled_for": r.scheduled_for.isoformat(),
                "status": "sending" if r.status == "claimed" else r.status,
                "reason": r.reason,
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                "recipient": r.recipient,
                "attempts": r.attempts,
                "deadline": r.deadline.isoformat() if r.deadline else None,
            }
            for r in conn.execute(query)
        )
    if status in (None, "scheduled", "held"):
        out.extend(_planned(conn, config, now, administration, status, limit))
    return out[:limit] if limit else out


def _planned(
    conn: Connection, config: Config, now: datetime, administration: str | None, status: str | None, limit: int | None
) -> list[dict[str, Any]]:
    a, i = administrations, invoices
    out: list[dict[str, Any]] = []
    for code in sorted(config.administrations):
        if administration and code != administration:
            continue
        admin = config.administrations[code]
        admin_id = conn.execute(sa.select(a.c.id).where(a.c.code == code)).scalar()
        if admin_id is None:
            continue
        cal = make_calendar(admin)
        after = 0
        while True:
            rows = conn.execute(
                invoice_query()
                .add_columns(_document_mask().label("documents"))
                .where(i.c.administration_id == admin_id, i.c.status == "open", i.c.id > after)
                .order_by(i.c.id)
                .limit(2000)
            ).all()
            if not rows:
                break
            after = rows[-1].id
            docs = {r.id: list(DOCUMENT_KINDS[r.documents]) for r in rows}
            for item in decide_rows(conn, admin, admin_id, cal, rows, now, documents=docs):
                nxt = item.decision.next
                if nxt is None or nxt.state == "busy":  # a busy step has its row listed already
                    continue
                shown = "held" if nxt.state == "held" else "scheduled"
                if status and shown != status:
                    continue
                out.append(
                    {
                        "id": None,
                        "administration": code,
                        "invoice": item.row.number,
                        "kind": nxt.step.kind,
                        "sequence": nxt.step.sequence,
                        "scheduled_for": nxt.scheduled_for.isoformat(),
                        "status": shown,
                        "reason": nxt.reason,
                        "sent_at": None,
                        "recipient": nxt.recipient,
                        "attempts": 0,
                        "deadline": None,
                    }
                )
                if limit and len(out) >= limit:
                    return out
    return out


def resolve_delivery(conn: Connection, delivery_id: int, sent: bool, now: datetime) -> dict[str, Any]:
    """``outbox resolve ID --sent|--retry``: an operator settles an ``unknown`` (or ``failed``) delivery."""
    d = deliveries
    row = conn.execute(sa.select(d.c.id, d.c.status).where(d.c.id == delivery_id)).first()
    if row is None:
        raise LookupError(f"there is no delivery {delivery_id}")
    allowed = ("unknown",) if sent else ("unknown", "failed", "scheduled")
    if row.status not in allowed:
        action = "--sent" if sent else "--retry"
        raise LookupError(f"delivery {delivery_id} is {row.status}; {action} applies to {' or '.join(allowed)} only")
    values: dict[str, Any] = (
        {"status": "sent", "sent_at": now, "reason": "resolved by an operator: sent"}
        if sent
        else {"status": "scheduled", "reason": "resolved by an operator: send again"}
    )
    conn.execute(d.update().where(d.c.id == delivery_id, d.c.status == row.status).values(updated_at=now, **values))
    return {"id": delivery_id, "previous": row.status, "status": values["status"]}
