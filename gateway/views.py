"""Read-only views for the operator commands, in the JSON shapes of CONTRACT.md."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.reconcile import format_cents
from gateway.tables import administrations, debtors, invoices


def list_invoices(
    conn: Connection, *, administration: str | None = None, status: str = "open", limit: int | None = None
) -> list[dict[str, Any]]:
    i, d, a = invoices, debtors, administrations
    query = (
        sa.select(
            a.c.code,
            i.c.number,
            d.c.code.label("debtor"),
            i.c.invoice_date,
            i.c.due_date,
            i.c.amount_total_cents,
            i.c.amount_open_cents,
            i.c.currency,
            i.c.status,
            i.c.loaded_at,
            i.c.kind,
            i.c.send,
        )
        .select_from(i.join(d, d.c.id == i.c.debtor_id).join(a, a.c.id == i.c.administration_id))
        .order_by(a.c.code, i.c.due_date, i.c.number)
    )
    if administration:
        query = query.where(a.c.code == administration)
    if status != "all":
        query = query.where(i.c.status == status)
    if limit:
        query = query.limit(limit)
    return [
        {
            "administration": r.code,
            "number": r.number,
            "debtor": r.debtor,
            "invoice_date": r.invoice_date.isoformat(),
            "due_date": r.due_date.isoformat(),
            "amount_total": format_cents(r.amount_total_cents),
            "amount_open": format_cents(r.amount_open_cents),
            "currency": r.currency,
            "status": r.status,
            "kind": r.kind,
            "loaded_at": r.loaded_at.isoformat(),
            "paused": False,
            "blocked": None if r.send else "import_no_send",
            "next_send": None,
        }
        for r in conn.execute(query)
    ]
