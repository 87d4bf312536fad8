"""A snapshot's entries as rows of the stage tables: pure conversion, no database.

``gateway.staging`` writes these rows; the parse worker (``gateway.parse_worker``) produces them in a
second process. This module imports no SQLAlchemy, so that the worker starts quickly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.config import KindSettings
from gateway.ignore import IgnoreLists
from gateway.reconcile import MUTABLE_INVOICE_FIELDS, decide_kind
from gateway.records import DEBTOR_DATA_FIELDS, Debtor, Entry, Snapshot

# Invoice rows per batch. 5,000 rather than 10,000: the batch in hand is a share of both processes' peak
# (1M rows: importing process 133 -> 123 MB, parse worker 45 -> 37 MB, payt-xml 45 -> 34 MB), first imports
# as fast (alternating runs, within the machine's noise) and the re-import faster (13.5-14.5 s -> 11.8-12.9 s).
CHUNK = 5_000
DATE_CACHE_SIZE = 8192  # ISO strings of dates kept (a file has a few thousand distinct dates)

# The invoice fields a snapshot delivers, in the order of the stage_invoices columns after line and debtor_code.
STAGED_INVOICE_FIELDS = (
    "number",
    "invoice_date",
    "due_date",
    "amount_total_cents",
    "amount_open_cents",
    "currency",
    *MUTABLE_INVOICE_FIELDS,
    "kind",
    "send",
)
INVOICE_ROW_COLUMNS = ("line", "debtor_code", *STAGED_INVOICE_FIELDS)
VERSION_ROW_COLUMNS = ("code", "line", "fingerprint", *DEBTOR_DATA_FIELDS)
InvoiceRow = tuple[Any, ...]
VersionRow = tuple[Any, ...]
Batch = tuple[list[InvoiceRow], list[VersionRow]]


@dataclass(frozen=True)
class StagePolicy:
    """What staging needs of the administration's settings."""

    kinds: KindSettings
    ignore: IgnoreLists
    zone: ZoneInfo


def to_cents(amount: Decimal) -> int:
    """Whole cents of an amount; an amount with more than two decimals is a bug of its source."""
    numerator, denominator = amount.as_integer_ratio()
    if 100 % denominator:
        raise ValueError(f"amount {amount} has more than two decimals")
    return numerator * (100 // denominator)


def sent_at_utc(value: datetime | date | None, zone: ZoneInfo) -> datetime | None:
    """A delivered ``sent_at``: a date is midnight in the administration's zone; naive times are local."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


@dataclass
class StageRows:
    """Converts entries into batches of stage rows; collects the rows left out on purpose.

    ``naive_utc``: timestamps as SQLite's driver stores them (naive UTC) rather than aware (PostgreSQL).
    One row of ``stage_debtor_versions`` each time the debtor changes from one entry to the next.
    """

    policy: StagePolicy
    naive_utc: bool
    blocked_invoices: set[str] = field(default_factory=set)
    ignored: int = 0

    def batches(self, entries: Iterable[Entry], size: int = CHUNK) -> Iterator[Batch]:
        """The hot loop: one frame, everything it touches in local variables."""
        invoice_rows: list[InvoiceRow] = []
        version_rows: list[VersionRow] = []
        blocked = self.blocked_invoices
        policy = self.policy
        check_ignore = not policy.ignore.empty
        is_ignored = policy.ignore.is_ignored
        kinds, zone, naive_utc = policy.kinds, policy.zone, self.naive_utc
        debtor_values = attrgetter(*DEBTOR_DATA_FIELDS)
        iso: dict[date, str] = {}
        cached_iso = iso.get
        previous: Debtor | None = None
        for entry in entries:
            inv, debtor = entry.invoice, entry.debtor
            number = inv.number
            if check_ignore and is_ignored(number, debtor.code, inv.payment_condition):
                blocked.add(number)
                self.ignored += 1
                continue
            amount_total, amount_open = inv.amount_total, inv.amount_open
            total = to_cents(amount_total)
            # A parser gives an open amount written as the total the total's own Decimal: most rows are unpaid.
            open_ = total if amount_open is amount_total else to_cents(amount_open)
            kind, kind_policy = decide_kind(total, open_, kinds)
            if kind_policy == "skip":
                blocked.add(number)
                self.ignored += 1
                continue
            sent_at = inv.sent_at
            if sent_at is not None:
                sent_at = sent_at_utc(sent_at, zone)
                if naive_utc:
                    sent_at = sent_at.replace(tzinfo=None)  # type: ignore[union-attr]
            invoice_date, due_date = inv.invoice_date, inv.due_date
            invoice_iso = cached_iso(invoice_date)
            if invoice_iso is None:
                invoice_iso = iso[invoice_date] = invoice_date.isoformat()
            due_iso = cached_iso(due_date)
            if due_iso is None:
                due_iso = iso[due_date] = due_date.isoformat()
            if len(iso) > DATE_CACHE_SIZE:
                iso.clear()
            line = entry.line
            invoice_rows.append(
                (
                    line,
                    inv.debtor_code,
                    number,
                    invoice_iso,
                    due_iso,
                    total,
                    open_,
                    inv.currency,
                    inv.description,
                    inv.payment_condition,
                    inv.payment_reference,
                    inv.order_number,
                    sent_at,
                    inv.document_filename,
                    kind,
                    kind_policy == "import_and_send",
                )
            )
            if debtor is not previous:
                previous = debtor
                values = debtor_values(debtor)
                version_rows.append((debtor.code, line, hash(values), *values))
            if len(invoice_rows) >= size:
                yield invoice_rows, version_rows
                invoice_rows, version_rows = [], []
        if invoice_rows or version_rows:
            yield invoice_rows, version_rows


class RowSource(Protocol):
    """A snapshot and its stage rows: parsed here (``LocalRows``) or in a worker process (``WorkerRows``).

    ``snapshot``'s problems, blocked keys and row count, ``blocked_invoices`` (ignored and skipped items),
    and ``ignored`` are complete once ``batches()`` is exhausted.
    """

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def blocked_invoices(self) -> set[str]: ...

    @property
    def ignored(self) -> int: ...

    def batches(self) -> Iterator[Batch]: ...


class LocalRows:
    """The stage rows of a snapshot parsed in this process."""

    def __init__(self, snapshot: Snapshot, policy: StagePolicy, naive_utc: bool, chunk: int = CHUNK):
        self.snapshot = snapshot
        self._rows = StageRows(policy, naive_utc)
        self._chunk = chunk

    @property
    def blocked_invoices(self) -> set[str]:
        return self._rows.blocked_invoices

    @property
    def ignored(self) -> int:
        return self._rows.ignored

    def batches(self) -> Iterator[Batch]:
        return self._rows.batches(self.snapshot.entries, self._chunk)
