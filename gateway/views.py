"""Read-only views for the operator commands, in the JSON shapes of CONTRACT.md."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.reconcile import format_cents
from gateway.tables import administrations, debtors, documents, invoices

DOCUMENT_MISSING = "document missing"


# The kinds of an invoice's linked documents, by the bit mask that the query computes (pdf 1, ubl 2).
DOCUMENT_KINDS: tuple[tuple[str, ...], ...] = ((), ("pdf",), ("ubl",), ("pdf", "ubl"))


def _document_mask() -> sa.ColumnElement[int]:
    def has(kind: str) -> sa.ColumnElement[int]:
        found = sa.exists().where(documents.c.invoice_id == invoices.c.id, documents.c.kind == kind)
        return sa.case((found, 1), else_=0)

    return has("pdf") + 2 * has("ubl")


def _blocked(send: bool, required: bool, mask: int) -> str | None:
    if not send:
        return "import_no_send"
    if required and not mask:
        return DOCUMENT_MISSING
    return None


def list_invoices(
    conn: Connection,
    *,
    administration: str | None = None,
    status: str = "open",
    limit: int | None = None,
    documents_required: Collection[str] = (),
) -> list[dict[str, Any]]:
    """``documents_required``: the codes of the administrations whose invoices need a document to be sent."""
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
            _document_mask().label("documents"),
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
    rows = []
    for r in conn.execute(query):
        kinds = DOCUMENT_KINDS[r.documents]
        rows.append(
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
                "blocked": _blocked(r.send, r.code in documents_required, r.documents),
                "next_send": None,
                "document": kinds[0] if kinds else None,
                "documents": list(kinds),
            }
        )
    return rows
