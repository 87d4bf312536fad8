"""What the sender reads: invoices with their debtor, deliveries, holds and bounces, turned into plan inputs.

Shared by the sender (``gateway.sender``) and the operator views (``invoices``, ``outbox``), so that what an
operator sees is exactly what the next pass would decide.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from gateway.config import Administration
from gateway.ignore import IgnoreLists
from gateway.plan import Decision, Delivery, Holds, InvoiceFacts, decide_next
from gateway.slots import Calendar
from gateway.tables import administrations, bounces, debtors, deliveries, holds, invoices

PAUSE_FLAGS = {"pause": False, "pause_reminders": True}

INVOICE_COLUMNS = (
    invoices.c.id,
    invoices.c.debtor_id,
    invoices.c.number,
    invoices.c.status,
    invoices.c.kind,
    invoices.c.send,
    invoices.c.amount_open_cents,
    invoices.c.amount_total_cents,
    invoices.c.currency,
    invoices.c.invoice_date,
    invoices.c.due_date,
    invoices.c.loaded_at,
    invoices.c.sent_at,
    invoices.c.description,
    invoices.c.payment_condition,
    invoices.c.payment_reference,
    invoices.c.order_number,
    invoices.c.document_filename,
    debtors.c.code.label("debtor_code"),
    debtors.c.company_name,
    debtors.c.firstname,
    debtors.c.infix,
    debtors.c.lastname,
    debtors.c.is_company,
    debtors.c.email,
    debtors.c.invoice_email,
    debtors.c.reminder_email,
    debtors.c.language_code,
    debtors.c.country_code,
    debtors.c.street_1,
    debtors.c.postal_code,
    debtors.c.city,
)


def invoice_query() -> sa.Select[Any]:
    return sa.select(*INVOICE_COLUMNS).select_from(invoices.join(debtors, debtors.c.id == invoices.c.debtor_id))


def administration_id(conn: Connection, code: str) -> int | None:
    found = conn.execute(sa.select(administrations.c.id).where(administrations.c.code == code)).scalar()
    return None if found is None else int(found)


def facts_of(row: Row[Any], ignore: IgnoreLists, document_missing: bool = False) -> InvoiceFacts:
    return InvoiceFacts(
        invoice_id=row.id,
        debtor_id=row.debtor_id,
        number=row.number,
        status=row.status,
        kind=row.kind,
        send=bool(row.send),
        amount_open_cents=row.amount_open_cents,
        invoice_date=row.invoice_date,
        due_date=row.due_date,
        loaded_at=row.loaded_at,
        sent_at=row.sent_at,
        invoice_address=row.invoice_email or row.email,
        reminder_address=row.reminder_email or row.email,
        ignored=not ignore.empty and ignore.is_ignored(row.number, row.debtor_code, row.payment_condition),
        document_missing=document_missing,
    )


@dataclass
class AdminHolds:
    """The holds and bounces of one administration, indexed for lookups per invoice."""

    admin: list[tuple[str, bool]]
    debtor_pauses: dict[int, list[tuple[str, bool]]]
    invoice_pauses: dict[int, list[tuple[str, bool]]]
    no_invoices: set[int]
    no_final: set[int]
    bounced: dict[int, set[str]]

    def for_invoice(self, facts: InvoiceFacts, debtor_code: str) -> Holds:
        pauses = [
            *(("administration", r) for _, r in self.admin),
            *((f"debtor {debtor_code}", r) for _, r in self.debtor_pauses.get(facts.debtor_id, [])),
            *(("invoice", r) for _, r in self.invoice_pauses.get(facts.invoice_id, [])),
        ]
        # a full pause is reported before a reminders-only one
        pauses.sort(key=lambda p: p[1])
        return Holds(
            pauses=tuple(pauses),
            no_invoices=facts.debtor_id in self.no_invoices,
            no_final_reminder=facts.debtor_id in self.no_final,
            bounced=frozenset(self.bounced.get(facts.debtor_id, ())),
        )


def load_holds(conn: Connection, admin_id: int, debtor_ids: Iterable[int] | None = None) -> AdminHolds:
    found = AdminHolds([], defaultdict(list), defaultdict(list), set(), set(), defaultdict(set))
    for scope, target, flag in conn.execute(
        sa.select(holds.c.scope, holds.c.target_id, holds.c.flag).where(holds.c.administration_id == admin_id)
    ):
        if flag in PAUSE_FLAGS:
            entry = (flag, PAUSE_FLAGS[flag])
            if scope == "administration":
                found.admin.append(entry)
            elif scope == "debtor":
                found.debtor_pauses[target].append(entry)
            else:
                found.invoice_pauses[target].append(entry)
        elif flag == "no_invoices":
            found.no_invoices.add(target)
        elif flag == "no_final_reminder":
            found.no_final.add(target)
    query = sa.select(bounces.c.debtor_id, bounces.c.address).join(debtors, debtors.c.id == bounces.c.debtor_id)
    query = query.where(debtors.c.administration_id == admin_id)
    if debtor_ids is not None:
        query = query.where(bounces.c.debtor_id.in_(sorted(set(debtor_ids))))
    for debtor_id, address in conn.execute(query):
        found.bounced[debtor_id].add(address)
    return found


def load_deliveries(conn: Connection, invoice_ids: Sequence[int]) -> dict[int, list[Delivery]]:
    found: dict[int, list[Delivery]] = defaultdict(list)
    if not invoice_ids:
        return found
    d = deliveries
    query = sa.select(d.c.id, d.c.invoice_id, d.c.kind, d.c.sequence, d.c.status, d.c.sent_at).where(
        d.c.invoice_id.in_(list(invoice_ids))
    )
    for row in conn.execute(query):
        found[row.invoice_id].append(Delivery(row.id, row.kind, row.sequence, row.status, row.sent_at))
    return found


@dataclass
class Decided:
    row: Row[Any]
    facts: InvoiceFacts
    holds: Holds
    decision: Decision


def decide_rows(
    conn: Connection,
    admin: Administration,
    admin_id: int,
    cal: Calendar,
    rows: Sequence[Row[Any]],
    now: datetime,
    documents: dict[int, list[Any]] | None = None,
) -> list[Decided]:
    """Decide every invoice of ``rows`` (one administration) as the next pass would."""
    ignore = IgnoreLists.from_settings(admin.ignore)
    admin_holds = load_holds(conn, admin_id, (r.debtor_id for r in rows))
    rows_deliveries = load_deliveries(conn, [r.id for r in rows])
    out: list[Decided] = []
    for row in rows:
        missing = admin.documents.required and documents is not None and not documents.get(row.id)
        facts = facts_of(row, ignore, document_missing=missing)
        hold = admin_holds.for_invoice(facts, row.debtor_code)
        decision = decide_next(facts, rows_deliveries.get(row.id, []), hold, now, cal, admin.sending, admin.reminders)
        out.append(Decided(row, facts, hold, decision))
    return out
