"""How the payt-xml worker process hands its entries to the parser: length-prefixed ``marshal`` frames on a pipe.

A frame is a list of items in file order: a debtor (``DEBTOR_ITEM`` followed by the ``Debtor`` fields in
their declared order) before the first of its invoices, and each invoice as ``INVOICE_ITEM``, the entry's
line and the ``Invoice`` fields with the dates as ordinals, the amounts as their exact decimal text and
``sent_at`` in ISO 8601. The last frame is the worker's ``Outcome``. ``marshal`` handles only plain values
(never code or objects), and both ends are the same Python: the frames never leave the machine.
"""

from __future__ import annotations

import marshal
import os
import queue
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from gateway.records import Debtor, Entry, Invoice, Problem, Severity

DEBTOR_ITEM, INVOICE_ITEM, OUTCOME = 0, 1, 2
FRAME_ITEMS = 2000  # items per frame
READ_CHUNK = 1 << 20
PREFETCH_FRAMES = 16  # about 16 x 260 kB: a little more than two chunks of stage rows
_LENGTH = struct.Struct("<I")
_debtor_values = attrgetter(*(f.name for f in fields(Debtor)))


@dataclass
class Outcome:
    """What the worker knows once the file is read: the snapshot's counts, keys and problems, and the
    schema verdict (``rejected``: the problems that reject the whole file, empty when it is valid)."""

    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    blocked_invoices: set[str] = field(default_factory=set)
    blocked_debtors: set[str] = field(default_factory=set)
    rejected: list[Problem] = field(default_factory=list)


def write_frame(out: int, items: Any) -> None:
    """One frame to the file descriptor ``out``, written whole (``os.write`` may write part of it)."""
    data = marshal.dumps(items)
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(out, view) :]


def _read_exactly(stream: int, size: int) -> bytes:
    parts = []
    while size:
        part = os.read(stream, min(size, READ_CHUNK))
        if not part:
            raise EOFError("the payt-xml worker stopped before its outcome")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def write_entries(out: int, entries: Iterable[Entry]) -> None:
    """The entries in frames of ``FRAME_ITEMS``; those read before ``entries`` raises are written too."""
    items: list[tuple[Any, ...]] = []
    last: Debtor | None = None
    try:
        for entry in entries:
            debtor, invoice = entry.debtor, entry.invoice
            if debtor is not last:
                items.append((DEBTOR_ITEM, *_debtor_values(debtor)))
                last = debtor
            sent = invoice.sent_at
            items.append(
                (
                    INVOICE_ITEM,
                    entry.line,
                    invoice.number,
                    invoice.debtor_code,
                    invoice.invoice_date.toordinal(),
                    invoice.due_date.toordinal(),
                    str(invoice.amount_total),
                    str(invoice.amount_open),
                    invoice.currency,
                    invoice.description,
                    invoice.payment_condition,
                    invoice.payment_reference,
                    invoice.order_number,
                    None if sent is None else sent.isoformat(),
                    invoice.document_filename,
                )
            )
            if len(items) >= FRAME_ITEMS:
                write_frame(out, items)
                items = []
    finally:
        if items:
            write_frame(out, items)


def write_outcome(out: int, outcome: Outcome) -> None:
    write_frame(
        out,
        [
            (
                OUTCOME,
                outcome.rows,
                [_problem(p) for p in outcome.problems],
                sorted(outcome.blocked_invoices),
                sorted(outcome.blocked_debtors),
                [_problem(p) for p in outcome.rejected],
            )
        ],
    )


def _problem(p: Problem) -> tuple[str, str, str, int | None, str | None]:
    return (p.severity.value, p.code, p.message, p.row, p.column)


def _unproblem(t: list[Any] | tuple[Any, ...]) -> Problem:
    return Problem(Severity(t[0]), t[1], t[2], t[3], t[4])


class FrameReader:
    """The frames on a file descriptor, read ahead by a thread so that the worker is not held up while the
    consumer is busy (e.g. writing a chunk of stage rows): up to ``PREFETCH_FRAMES`` frames wait here
    instead of in the 64 KiB pipe. ``close()`` once the writer has gone (its end of the pipe closed), then
    close the descriptor."""

    def __init__(self, stream: int):
        self.stream = stream
        self.frames: queue.Queue[bytes | BaseException] = queue.Queue(PREFETCH_FRAMES)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="payt-xml-frames", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                (size,) = _LENGTH.unpack(_read_exactly(self.stream, _LENGTH.size))
                item: bytes | BaseException = _read_exactly(self.stream, size)
            except (EOFError, OSError) as exc:
                item = exc
            while not self.stopped.is_set():
                try:
                    self.frames.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def next(self) -> Any:
        item = self.frames.get()
        if isinstance(item, BaseException):
            raise item
        return marshal.loads(item)

    def stop(self) -> None:
        """Read no more frames (the thread ends when its read returns)."""
        self.stopped.set()

    def close(self) -> None:
        self.stop()
        self.thread.join()


def read_entries(frames: FrameReader, outcome: Outcome) -> Iterator[Entry]:
    """The entries of the frames; ``outcome`` is filled in from the last frame. EOFError when the frames end
    before the outcome."""
    fromordinal = date.fromordinal
    debtor: Debtor | None = None
    while True:
        for item in frames.next():
            kind = item[0]
            if kind == INVOICE_ITEM:
                (_, line, number, code, invoice_day, due_day, total, open_, currency, description, condition) = item[
                    :11
                ]
                reference, order_number, sent, document = item[11:]
                invoice = Invoice(
                    number,
                    code,
                    fromordinal(invoice_day),
                    fromordinal(due_day),
                    Decimal(total),
                    Decimal(open_),
                    currency,
                    description,
                    condition,
                    reference,
                    order_number,
                    None if sent is None else datetime.fromisoformat(sent) if "T" in sent else date.fromisoformat(sent),
                    document,
                )
                yield Entry(line, debtor, invoice)  # type: ignore[arg-type]  # a debtor always comes first
            elif kind == DEBTOR_ITEM:
                debtor = Debtor(*item[1:])
            else:
                _, outcome.rows, problems, blocked_invoices, blocked_debtors, rejected = item
                outcome.problems = [_unproblem(p) for p in problems]
                outcome.blocked_invoices = set(blocked_invoices)
                outcome.blocked_debtors = set(blocked_debtors)
                outcome.rejected = [_unproblem(p) for p in rejected]
                return
