"""The canonical records every source produces: a snapshot of one administration's open items.

This module imports nothing of the project. Parsers and connectors depend on it, and only on it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a delivery. ``row`` is the file line (header = 1); None for file-level problems."""

    severity: Severity
    code: str
    message: str
    row: int | None = None
    column: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "code": self.code, "message": self.message}


def error(code: str, message: str, row: int | None = None, column: str | None = None) -> Problem:
    return Problem(Severity.ERROR, code, message, row, column)


def warning(code: str, message: str, row: int | None = None, column: str | None = None) -> Problem:
    return Problem(Severity.WARNING, code, message, row, column)


def notice(code: str, message: str, row: int | None = None, column: str | None = None) -> Problem:
    return Problem(Severity.NOTICE, code, message, row, column)


@dataclass(slots=True)
class Debtor:
    """A debtor's contact data as the source delivers it. Empty optional fields are None.

    Debtor, Invoice and Entry are treated as immutable values but are not ``frozen``: a frozen dataclass
    sets each field through ``object.__setattr__``, which costs a second per million rows in a parser.
    """

    code: str
    company_name: str | None = None
    is_company: bool | None = None
    firstname: str | None = None
    infix: str | None = None
    lastname: str | None = None
    email: str | None = None
    invoice_email: str | None = None
    reminder_email: str | None = None
    phone: str | None = None
    mobile: str | None = None
    street_1: str | None = None
    street_2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country_code: str | None = None
    language_code: str | None = None
    vat_number: str | None = None
    coc_number: str | None = None
    iban: str | None = None


# The debtor fields that every import updates (all but the code).
DEBTOR_DATA_FIELDS: tuple[str, ...] = tuple(f for f in Debtor.__slots__ if f != "code")


@dataclass(slots=True)
class Invoice:
    """An open item: an invoice (positive total), credit note (negative) or zero-amount invoice."""

    number: str
    debtor_code: str
    invoice_date: date
    due_date: date
    amount_total: Decimal
    amount_open: Decimal
    currency: str
    description: str | None = None
    payment_condition: str | None = None
    payment_reference: str | None = None
    order_number: str | None = None
    sent_at: datetime | date | None = None
    document_filename: str | None = None
    # Where the source keeps the invoice's PDF (API sources, SPEC.md §0): a URL that the connector which made
    # the record can download with its vendor's authorisation (``Connector.fetch_pdf``), possibly through a
    # lookup only that connector knows (Exact Online: the document's attachment list). Not part of a file.
    pdf_url: str | None = None


# Frozen on first load (DOMAIN.md §2): a later change is a warning and the stored value stays.
FROZEN_INVOICE_FIELDS: tuple[str, ...] = (
    "invoice_date",
    "due_date",
    "amount_total",
    "currency",
    "debtor_code",
)


@dataclass(slots=True)
class Entry:
    """One delivered row: the debtor and its invoice, with the line it came from."""

    line: int
    debtor: Debtor
    invoice: Invoice


@dataclass(slots=True)
class Snapshot:
    """What a parser or connector delivers for one administration.

    ``entries`` are the rows without errors; ``blocked_invoices`` and ``blocked_debtors`` are the keys of
    rows that had errors: they get no update in this run and are not treated as disappeared.
    ``explicit_empty`` is set when the source says in so many words that there are no open items.
    ``entries`` may be a lazy iterator (a streaming parser's generator): consume it once; while it is
    consumed the parser appends to ``problems``, ``blocked_*`` and ``rows``, which are complete only
    after it is exhausted.
    """

    administration_code: str | None
    entries: Iterable[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    blocked_invoices: set[str] = field(default_factory=set)
    blocked_debtors: set[str] = field(default_factory=set)
    explicit_empty: bool = False
    rows: int = 0
    detected: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]


@dataclass(frozen=True, slots=True)
class UblDocument:
    """The key fields of a schema-valid UBL 2.1 Invoice or CreditNote; the archived file is the full document.

    ``number`` is ``cbc:ID``, the invoice number it is linked by. ``due_date`` is ``cbc:DueDate`` or, for a
    credit note (which has none), the first ``cac:PaymentMeans/cbc:PaymentDueDate``.
    """

    kind: str  # "invoice" | "credit_note"
    number: str
    issue_date: date
    due_date: date | None
    type_code: str | None
    currency: str | None
    payable_amount: Decimal
    customer_name: str | None
    customer_id: str | None
    supplier_name: str | None

    def as_json(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "number": self.number,
            "issue_date": self.issue_date.isoformat(),
            "due_date": self.due_date.isoformat() if self.due_date else None,
            "type_code": self.type_code,
            "currency": self.currency,
            "payable_amount": str(self.payable_amount),
            "customer_name": self.customer_name,
            "customer_id": self.customer_id,
            "supplier_name": self.supplier_name,
        }


@dataclass(frozen=True, slots=True)
class PdfDocument:
    """A file that passed the cheap structural PDF check (header, end-of-file marker)."""

    version: str
    size: int


Document = UblDocument | PdfDocument
