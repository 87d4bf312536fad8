"""Pure decisions of reconcile (DOMAIN.md §2): invoice kinds, the guards, and what a changed invoice becomes.

No I/O here: ``gateway.apply`` finds the candidates in the database and carries these decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.config import GuardSettings, KindSettings
from gateway.records import Problem, warning

# The column names (FORMATS.md §1) under which a frozen field is reported.
FROZEN_COLUMNS = {
    "invoice_date": "invoice_date",
    "due_date": "invoice_due_date",
    "amount_total_cents": "invoice_total_amount_inc_vat",
    "currency": "invoice_currency_code",
    "debtor_code": "debtor_code",
}
# Invoice fields that follow the source on every import when delivered (an empty cell keeps the value).
MUTABLE_INVOICE_FIELDS = (
    "description",
    "payment_condition",
    "payment_reference",
    "order_number",
    "sent_at",
    "document_filename",
)


def decide_kind(total_cents: int, open_cents: int, kinds: KindSettings) -> tuple[str, str]:
    """The kind of a newly loaded invoice and the policy that applies to it (import_and_send, …, skip)."""
    if total_cents < 0:
        return "credit_note", kinds.credit_note
    if total_cents == 0:
        return "zero_amount", kinds.zero_amount
    if open_cents == 0:
        return "prepaid", kinds.prepaid
    return "invoice", "import_and_send"


def decide_guard(
    *,
    rows: int,
    explicit_empty: bool,
    open_count: int,
    to_close: int,
    guards: GuardSettings,
) -> str | None:
    """Why a snapshot must be held for an operator, or None to apply it."""
    if guards.empty_file and rows == 0 and not explicit_empty and to_close > 0:
        return (
            f"empty file: it has no rows and would mark all {to_close} open invoices paid; "
            "release the run to apply it, or discard it"
        )
    if open_count and to_close >= max(guards.max_close_min, 1):
        ratio = to_close / open_count
        if ratio > guards.max_close_ratio:
            return (
                f"drop guard: the snapshot would close {to_close} of {open_count} open invoices "
                f"({ratio:.0%}), more than the allowed {guards.max_close_ratio:.0%}; "
                "release the run to apply it, or discard it"
            )
    return None


@dataclass(frozen=True)
class StoredInvoice:
    id: int
    number: str
    debtor_code: str
    invoice_date: date
    due_date: date
    amount_total_cents: int
    currency: str
    amount_open_cents: int
    status: str
    mutable: tuple[Any, ...]  # in MUTABLE_INVOICE_FIELDS order


@dataclass(frozen=True)
class IncomingInvoice:
    line: int
    number: str
    debtor_code: str
    invoice_date: date
    due_date: date
    amount_total_cents: int
    currency: str
    amount_open_cents: int
    mutable: tuple[Any, ...]  # in MUTABLE_INVOICE_FIELDS order; None = not delivered


@dataclass
class InvoiceUpdate:
    """What to write for one invoice that is in the snapshot and already stored."""

    invoice_id: int
    changed: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    payment_cents: int = 0
    closed: bool = False
    reopened: bool = False
    warnings: list[Problem] = field(default_factory=list)


def _show(field_name: str, value: Any) -> str:
    if field_name == "amount_total_cents":
        return format_cents(int(value))
    return str(value)


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def decide_status(open_cents: int) -> str:
    """An invoice with nothing left open is paid (a zero open amount is a valid, paid row)."""
    return "open" if open_cents else "paid"


def decide_invoice_update(stored: StoredInvoice, incoming: IncomingInvoice) -> InvoiceUpdate:
    """Frozen fields keep their stored value (a change is a warning); the open amount and delivered mutable
    fields follow the source; a change of the open amount is a derived payment; the status follows the
    open amount (zero is paid; a paid invoice delivered again with an open amount is reopened)."""
    update = InvoiceUpdate(stored.id)
    for name, column in FROZEN_COLUMNS.items():
        old, new = getattr(stored, name), getattr(incoming, name)
        if old != new:
            update.warnings.append(
                warning(
                    "frozen_field_changed",
                    f"{column} of invoice {stored.number} is frozen at {_show(name, old)}; "
                    f"the delivered {_show(name, new)} is ignored",
                    incoming.line,
                    column,
                )
            )
    if incoming.amount_open_cents != stored.amount_open_cents:
        update.payment_cents = stored.amount_open_cents - incoming.amount_open_cents
        update.values["amount_open_cents"] = incoming.amount_open_cents
    status = decide_status(incoming.amount_open_cents)
    if status != stored.status:
        update.values["status"] = status
        update.closed = status == "paid"
        update.reopened = status == "open"
    for name, old, new in zip(MUTABLE_INVOICE_FIELDS, stored.mutable, incoming.mutable, strict=True):
        if new is not None and new != old:
            update.values[name] = new
    update.changed = bool(update.values)
    return update


@dataclass
class Counts:
    rows: int = 0
    debtors_created: int = 0
    debtors_updated: int = 0
    invoices_created: int = 0
    invoices_updated: int = 0
    invoices_closed: int = 0
    errors: int = 0
    warnings: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
