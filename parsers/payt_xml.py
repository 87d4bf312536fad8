"""payt-xml: a streaming reader for open-items XML files (FORMATS.md §2, ``schemas/payt-xml-1.xsd``) -> Snapshot.

The same canonical snapshot as payt-csv, with the same business checks (``parsers.row_checks``): a debtor's
data is checked as the payt-csv debtor columns would be, an invoice as the invoice columns. A problem's
``row`` is the source line of the element and its ``column`` the element path
(``/OpenItems/Debtor[12]/Invoice[3]/DueDate``). A row error blocks that debtor or invoice, as in payt-csv.

Schema validation (``parsers.payt_xml_schema``) decides whether the file is taken at all:
- a small file (below ``XmlOptions.parallel_from_bytes``) is validated before ``parse_payt_xml`` returns;
  an invalid one raises ``RejectFile`` with every schema error located;
- a large file on disk is validated by a second process (``parsers.payt_xml_worker``) while this one reads
  the entries without the schema: the two passes run on two cores. The validator checks the schema in C
  (``parsers.schema_stream``) and leaves the unique keys of a valid file to the reading, which hashes them
  as it goes and locates any repeated one at the end (``duplicate_keys``). (In the gateway a large file is parsed in
  a worker process, ``gateway.parse_worker``, so there are three: the importing process writes the stage
  rows, the worker reads the entries, the validator checks the schema.) The entries generator raises
  ``RejectFile`` after the last entry if the validator found the file invalid, so a consumer that stages
  entries in a transaction must not commit before the generator is exhausted (the pipeline does exactly that).

Memory stays bounded: every element is cleared once read, with the elements before it (``ElementStream``).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO, Protocol

from lxml import etree

from gateway.errors import RejectFile
from gateway.records import Debtor, Entry, Invoice, Problem, Severity, Snapshot, error, notice
from parsers.column_spec import load_spec
from parsers.csv_values import CURRENCIES, SIMPLE_AMOUNT, InvalidValue, parse_date
from parsers.payt_xml_schema import (
    DEBTOR,
    INVOICE,
    NS,
    ROOT,
    duplicate_keys,
    validate_payt_xml,
)
from parsers.row_checks import (
    MAX_PROBLEMS_PER_CODE,
    CellsCheck,
    Finding,
    field_order,
    in_field_order,
    invoice_rules,
    open_fits,
    truncation_notices,
)
from parsers.xml_safety import head_root

FORMAT = "payt-xml"
PARALLEL_FROM_BYTES = 4 << 20  # from this size a validator process checks the schema beside the reading
# The validator runs this much nicer than the reading process. Reading the entries is the import's critical
# path (the importing process waits for its rows), while the validator has slack: it needs two thirds of the
# reader's CPU time and its verdict is wanted only at the end. At equal priority the validator took a core's
# share from the reader, and once it was done the importing process idled half the time while the reader
# finished alone. Nicer, it fills the cores' idle time instead (1M invoices on two cores: wall time per CPU
# second 0.63 -> 0.54-0.58; see benchmarks/README.md).
VALIDATOR_NICENESS = 10

# Where each payt-csv column lives in a Debtor / Invoice element (a path relative to it).
DEBTOR_PATHS = {
    "debtor_code": "@code",
    "debtor_is_company": "@isCompany",
    "debtor_company_name": "Name",
    "debtor_firstname": "FirstName",
    "debtor_infix": "Infix",
    "debtor_lastname": "LastName",
    "debtor_email": "Email",
    "debtor_invoice_email": 'Email[@type="invoice"]',
    "debtor_reminder_email": 'Email[@type="reminder"]',
    "debtor_phone": "Phone",
    "debtor_mobile": 'Phone[@type="mobile"]',
    "debtor_post_street_1": "Address/Street1",
    "debtor_post_street_2": "Address/Street2",
    "debtor_post_postalcode": "Address/PostalCode",
    "debtor_post_city": "Address/City",
    "debtor_post_country_code": "Address/Country",
    "debtor_language_code": "Language",
    "debtor_vat_number": "VatNumber",
    "debtor_coc_number": "CocNumber",
    "debtor_iban": "Iban",
}
INVOICE_PATHS = {
    "administration_code": "/OpenItems/@administrationCode",
    "invoice_number": "@number",
    "invoice_date": "InvoiceDate",
    "invoice_due_date": "DueDate",
    "invoice_total_amount_inc_vat": "TotalAmount",
    "invoice_open_amount_inc_vat": "OpenAmount",
    "invoice_currency_code": "Currency",
    "invoice_description": "Description",
    "invoice_payment_condition": "PaymentCondition",
    "invoice_payment_reference": "PaymentReference",
    "invoice_order_number": "OrderNumber",
    "invoice_sent_at": "SentAt",
    "invoice_document_filename": "Document/@filename",
}


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


# The child elements that carry a debtor's data: tag -> payt-csv column (Email and Phone by their type).
_DEBTOR_CHILDREN = {_q(path): column for column, path in DEBTOR_PATHS.items() if path.isalpha()}
_ADDRESS_CHILDREN = {_q(path.split("/")[1]): column for column, path in DEBTOR_PATHS.items() if "Address/" in path}
_EMAIL_TYPES = {"default": "debtor_email", "invoice": "debtor_invoice_email", "reminder": "debtor_reminder_email"}
_PHONE_TYPES = {"phone": "debtor_phone", "mobile": "debtor_mobile"}
_EMAIL, _PHONE, _ADDRESS, _DOCUMENT = _q("Email"), _q("Phone"), _q("Address"), _q("Document")
# The invoice's text elements, in INVOICE_PATHS order: date, due date, total, open, currency, description,
# payment condition and reference, order number, sent at (the fast path, ``Extractor.quick``, takes them in this order).
_INVOICE_TAGS = tuple(_q(path) for path in INVOICE_PATHS.values() if path.isalpha())


@dataclass(frozen=True, slots=True)
class XmlOptions:
    """How to read one administration's payt-xml file."""

    administration_code: str
    default_currency: str = "EUR"  # when neither the invoice nor OpenItems/@currency has one
    default_country: str | None = "NL"
    date_order: str = "dmy"  # xs:date is always yyyy-mm-dd; present for the shared checks
    parallel_from_bytes: int = PARALLEL_FROM_BYTES


@dataclass(frozen=True, slots=True)
class _Head:
    administration_code: str | None
    currency: str | None
    empty: bool
    generated_at: str | None


def parse_payt_xml(source: BinaryIO, options: XmlOptions) -> Snapshot:
    """Read a payt-xml file. Raises RejectFile for file errors found before the first invoice is read."""
    start = source.tell()
    head = _read_head(source)
    source.seek(start)
    currency = head.currency or options.default_currency
    if currency not in CURRENCIES:
        raise RejectFile(
            [error("invalid_currency", f"OpenItems/@currency {currency!r} is not an ISO 4217 currency code", 1)]
        )
    parallel = _parallel_source(source, options)
    if parallel is None:
        problems = validate_payt_xml(source)
        if any(p.severity is Severity.ERROR for p in problems):
            raise RejectFile(problems)
    snapshot = Snapshot(
        administration_code=head.administration_code,
        explicit_empty=head.empty,
        detected={"format": FORMAT, "schema": "payt-xml-1", "validation": "parallel" if parallel else "before"},
    )
    if head.generated_at:
        snapshot.detected["generated_at"] = head.generated_at
    resolved = XmlOptions(options.administration_code, currency, options.default_country, options.date_order)
    if parallel is None:
        snapshot.entries = _local_entries(source, snapshot, resolved)
    else:
        snapshot.entries = _parallel_entries(source, *parallel, snapshot, resolved)
    return snapshot


# ------------------------------------------------------------------------------------------ the head


def _read_head(source: BinaryIO) -> _Head:
    """The root element's attributes, read safely from the head of the file; DOCTYPE and other roots refused."""
    return _head_of(head_root(source.read))


def _head_of(root: Any) -> _Head:
    if root.tag != ROOT:
        raise RejectFile(
            [
                error(
                    "unknown_xml",
                    f'the root element is {root.tag!r}, not <OpenItems xmlns="{NS}"> (payt-xml version 1)',
                    root.sourceline,
                )
            ]
        )
    empty = (root.get("empty") or "").strip() in ("true", "1")
    return _Head(root.get("administrationCode"), root.get("currency"), empty, root.get("generatedAt"))


# --------------------------------------------------------------------------------- the two paths


def _parallel_source(source: BinaryIO, options: XmlOptions) -> tuple[int, int] | None:
    """(file descriptor, offset) when a second process should validate and read the file, else None."""
    try:
        fd = source.fileno()
        size = os.fstat(fd).st_size
    except (AttributeError, OSError, ValueError):
        return None
    offset = source.tell()
    return (fd, offset) if size - offset >= options.parallel_from_bytes else None


def _local_entries(source: BinaryIO, snapshot: Snapshot, options: XmlOptions) -> Iterator[Entry]:
    from parsers.payt_xml_scan import XmlReading  # it builds on this module's Extractor

    yield from XmlReading(source, snapshot, options, hash_keys=False).entries()
    _check_empty(snapshot)


def _parallel_entries(
    source: BinaryIO, fd: int, offset: int, snapshot: Snapshot, options: XmlOptions
) -> Iterator[Entry]:
    """The entries read here without the schema while ``python -m parsers.payt_xml_worker`` validates the same
    file in a second process; after the last entry, ``RejectFile`` if the validator found the file invalid
    (the consumer must not take anything before the end). The validator's verdict also comes first when the
    reading stops on a surprise: an invalid file explains it better than a traceback."""
    from parsers.payt_xml_scan import XmlReading  # it builds on this module's Extractor

    reading = XmlReading(source, snapshot, options, hash_keys=True)
    with Validator(fd, offset) as validator:
        try:
            yield from reading.entries()
        except Exception:
            validator.reject_if_invalid()
            raise
        validator.reject_if_invalid()
    source.seek(offset)
    repeated = duplicate_keys(source, reading.keys)  # the validator leaves the unique keys of a valid file to us
    if repeated:
        raise RejectFile(repeated)
    _check_empty(snapshot)


class Validator:
    """The validator process (``parsers.payt_xml_worker``) over the parser's file descriptor."""

    def __init__(self, fd: int, offset: int):
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "parsers.payt_xml_worker", str(fd), str(offset)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            pass_fds=(fd,),
        )
        try:
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + VALIDATOR_NICENESS)
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, niceness)
        except OSError:  # it has exited already (its verdict is waiting)
            pass

    @property
    def pid(self) -> int:
        return self._proc.pid

    def reject_if_invalid(self) -> None:
        """Wait for the validator; ``RejectFile`` with the file's schema problems if it is invalid."""
        problems = self._verdict()
        if any(p.severity is Severity.ERROR for p in problems):
            raise RejectFile(problems) from None

    def _verdict(self) -> list[Problem]:
        """Wait for the validator: the schema problems of the file, empty when it is valid."""
        assert self._proc.stdout is not None
        data = self._proc.stdout.read()
        code = self._proc.wait()
        if code != 0 or not data:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"the payt-xml validator exited with {code}: {text}")
        problems: list[Problem] = pickle.loads(data)  # our own child process, on a pipe
        return problems

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._proc.poll() is None:
            self._proc.kill()  # the consumer stopped early, or the reading failed
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


def _check_empty(snapshot: Snapshot) -> None:
    if snapshot.explicit_empty and snapshot.rows:
        raise RejectFile(
            [
                error(
                    "empty_not_empty",
                    f'OpenItems says empty="true" but holds {snapshot.rows} invoices',
                    1,
                    "/OpenItems/@empty",
                )
            ]
        )


# ------------------------------------------------------------------------------------------- checks


class _Checks:
    """The payt-csv column checks for the debtor and invoice records."""

    def __init__(self, options: XmlOptions):
        spec = load_spec()
        self.options = options
        debtor_columns = spec.record_columns("debtor")
        invoice_columns = tuple(c for c in spec.columns if c.record != "debtor")
        self.debtor = CellsCheck(debtor_columns, options, spec.required_one_of)
        self.invoice = CellsCheck(invoice_columns, options, spec.required_one_of)
        self.debtor_names = [c.name for c in debtor_columns]
        self.debtor_order = field_order(Debtor, [c.field or c.name for c in debtor_columns])
        self.debtor_slot = {name: i for i, name in enumerate(self.debtor_names)}
        slot = self.debtor_slot
        typed = (_EMAIL, _PHONE)  # by their type attribute
        self.debtor_child_slot = {tag: slot[column] for tag, column in _DEBTOR_CHILDREN.items() if tag not in typed}
        self.address_slot = {tag: slot[column] for tag, column in _ADDRESS_CHILDREN.items()}
        self.invoice_names = [c.name for c in invoice_columns]
        self.invoice_fields = [c.field for c in invoice_columns]
        slot = {name: i for i, name in enumerate(self.invoice_names)}
        self.invoice_slot = {_q(path): slot[column] for column, path in INVOICE_PATHS.items() if path.isalpha()}
        self.number_slot = slot["invoice_number"]
        self.document_slot = slot["invoice_document_filename"]
        self.text_limit = spec.by_name["invoice_number"].max_length


def extract(stream: Iterable[Any], snapshot: Snapshot, options: XmlOptions) -> Iterator[Entry]:
    """The entries of the Debtor and Invoice elements of ``stream`` (an ``ElementStream``), checked as payt-csv
    rows are; problems, blocked keys and the row count go to ``snapshot``."""
    extractor = Extractor(_Checks(options), snapshot)
    yield from extractor.elements(stream)
    extractor.finish()


class Lines(Protocol):
    """Where a record's elements are: its own source line, and that of the element at a relative path."""

    @property
    def sourceline(self) -> int: ...

    def of(self, relative: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ElementLines:
    """The lines of an element of the tree (the reading with lxml)."""

    element: Any

    @property
    def sourceline(self) -> int:
        return self.element.sourceline  # type: ignore[no-any-return]

    def of(self, relative: str) -> int | None:
        return _line_of(self.element, relative)


# A quick check's arguments after the debtor code, in the order of the Invoice element's children (absent: None):
# number, invoice date, due date, total, open, currency, description, payment condition and reference, order
# number, sent at, document file name.
InvoiceTexts = tuple[str | None, ...]
QuickInvoice = Callable[..., Invoice | None]


class Extractor:
    """Turns the Debtor and Invoice elements of a payt-xml file into entries, checked as payt-csv rows are;
    problems, blocked keys and the row count go to ``snapshot``. ``elements`` reads an lxml element stream;
    ``parsers.payt_xml_scan`` reads the same file's text with the same checks (``quick``, ``debtor``,
    ``slow_invoice``)."""

    def __init__(self, checks: _Checks, snapshot: Snapshot):
        self.checks = checks
        self.snapshot = snapshot
        self.counts: dict[str, int] = {}
        self.debtor_index = 0
        self.dates: dict[str, date] = {}
        self.quick = self._quick()

    # -- problems

    def report(self, found: list[Finding], lines: Lines, base: str, paths: dict[str, str]) -> None:
        """Record ``found`` with its element paths below ``base`` and the source line of each (``lines``)."""
        problems = self.snapshot.problems
        for f in found:
            n = self.counts.get(f.code, 0) + 1
            self.counts[f.code] = n
            if n > MAX_PROBLEMS_PER_CODE:
                continue
            relative = paths.get(f.column or "", "")
            path = relative if relative.startswith("/") else f"{base}/{relative}" if relative else base
            line = lines.of(relative) if relative and not relative.startswith("/") else None
            problems.append(Problem(f.severity, f.code, f.message, line or lines.sourceline, path))

    def finish(self) -> None:
        self.snapshot.problems.extend(truncation_notices(self.counts))

    # -- the stream

    def elements(self, stream: Iterable[Any]) -> Iterator[Entry]:
        """The entries of an lxml element stream (``ElementStream``: the Debtor and Invoice elements at their
        end, cleared after). Each invoice is read through the fast path (``quick``) for the clean, typical
        values a schema-valid file holds; anything else takes the generic checks (``slow_invoice``), which
        report every problem. A debtor's data is read with its first invoice."""
        snapshot = self.snapshot
        quick = self.quick
        slow_invoice = self.slow_invoice
        invoice_tag, debtor_tag, document_tag = INVOICE, DEBTOR, _DOCUMENT
        t_date, t_due, t_total, t_open, t_currency = _INVOICE_TAGS[:5]
        t_description, t_condition, t_reference, t_order, t_sent = _INVOICE_TAGS[5:]
        current: Any = None
        debtor: Debtor | None = None
        code = ""
        invoice_index = 0
        rows = 0
        for element in stream:
            if element.tag != invoice_tag:
                if element is not current:
                    self.debtor_without_invoices(element.get("code"), element.sourceline)
                current = None
                continue
            parent = element.getparent()
            if parent is not current:
                if parent is None or parent.tag != debtor_tag:
                    continue  # not where the schema allows it: the validation rejects the file
                current = parent
                invoice_index = 0
                debtor = self.read_debtor(parent)
                code = (parent.get("code") or "").strip()
            invoice_index += 1
            rows += 1
            snapshot.rows = rows
            number = element.get("number") or ""
            texts = {child.tag: child.text for child in element}
            get = texts.get
            document = ""
            if document_tag in texts:
                document = element.find(document_tag).get("filename") or ""
            invoice = None
            if debtor is not None:
                invoice = quick(
                    code,
                    number,
                    get(t_date),
                    get(t_due),
                    get(t_total),
                    get(t_open),
                    get(t_currency),
                    get(t_description),
                    get(t_condition),
                    get(t_reference),
                    get(t_order),
                    (get(t_sent) or "") if t_sent in texts else None,
                    document,
                )
            if invoice is None:
                lines = ElementLines(element)
                invoice = slow_invoice(texts, number, document, lines, code, invoice_index, debtor is not None)
            if invoice is not None and debtor is not None:
                yield Entry(element.sourceline, debtor, invoice)

    def _quick(self) -> QuickInvoice:
        """The fast path: the invoice of clean, typical values, or None for the generic checks."""
        checks = self.checks
        limit = checks.text_limit
        default_currency = checks.options.default_currency
        currencies = CURRENCIES
        simple_amount = SIMPLE_AMOUNT.fullmatch
        fits = open_fits
        cached_date = self.dates.get
        new_date = self.new_date

        def quick(
            code: str,
            number: str,
            invoice_s: str | None,
            due_s: str | None,
            total_s: str | None,
            open_s: str | None,
            currency: str | None,
            description: str | None,
            condition: str | None,
            reference: str | None,
            order: str | None,
            sent: str | None,
            document: str | None,
        ) -> Invoice | None:
            currency = currency or ""
            description = description or ""
            condition = condition or ""
            reference = reference or ""
            order = order or ""
            document = document or ""
            if (
                sent is not None
                or not number
                or len(number) > limit
                or number != number.strip()
                or invoice_s is None
                or due_s is None
                or total_s is None
                or open_s is None
                or not simple_amount(total_s)
                or "," in total_s
                or (open_s != total_s and (not simple_amount(open_s) or "," in open_s))
                or (currency and currency not in currencies)
                or (
                    len(description) + len(condition) + len(reference) + len(order) + len(document) > limit
                    and max(len(description), len(condition), len(reference), len(order), len(document)) > limit
                )
            ):
                return None
            try:
                invoice_date = cached_date(invoice_s) or new_date(invoice_s)
                due_date = cached_date(due_s) or new_date(due_s)
            except InvalidValue:
                return None
            total = Decimal(total_s)
            open_ = total if open_s == total_s else Decimal(open_s)  # the same object: see StageRows
            if due_date < invoice_date or not fits(open_, total):
                return None
            return Invoice(
                number,
                code,
                invoice_date,
                due_date,
                total,
                open_,
                currency or default_currency,
                description.strip() or None,
                condition.strip() or None,
                reference.strip() or None,
                order.strip() or None,
                None,
                document.strip() or None,
            )

        return quick

    def debtor_without_invoices(self, code: str | None, line: int) -> None:
        """A debtor's end, when it had no invoices: a notice."""
        self.debtor_index += 1
        self.snapshot.problems.append(
            notice(
                "debtor_without_invoices",
                f"debtor {code} has no invoices; it is not imported",
                line,
                f"/OpenItems/Debtor[{self.debtor_index}]",
            )
        )

    # -- records

    def read_debtor(self, element: Any) -> Debtor | None:
        """The debtor's data (its children before the first invoice), checked as payt-csv debtor columns."""
        checks = self.checks
        raw = self.debtor_cells(element.get("code"), element.get("isCompany"))
        found: list[Finding] = []
        simple = checks.debtor_child_slot
        for child in element:
            tag = child.tag
            position = simple.get(tag)
            if position is not None:
                raw[position] = child.text or ""
            elif tag == INVOICE:
                break
            elif tag == _ADDRESS:
                address = checks.address_slot
                for part in child:
                    position = address.get(part.tag)
                    if position is not None:
                        raw[position] = part.text or ""
            elif tag in (_EMAIL, _PHONE):
                self.typed(raw, found, tag, child.get("type"), child.text)
        return self.debtor(raw, found, ElementLines(element))

    def debtor_cells(self, code: str | None, is_company: str | None) -> list[str]:
        """A debtor's payt-csv cells, with its code and company flag (the other cells empty)."""
        checks = self.checks
        raw = [""] * len(checks.debtor_names)
        raw[checks.debtor_slot["debtor_code"]] = code or ""
        raw[checks.debtor_slot["debtor_is_company"]] = is_company or ""
        return raw

    def typed(self, raw: list[str], found: list[Finding], tag: str, kind: str | None, text: str | None) -> None:
        """An Email or Phone element into its cell by its type (one of a type given twice is an error)."""
        typed = _EMAIL_TYPES if tag == _EMAIL else _PHONE_TYPES
        column = typed.get(("default" if tag == _EMAIL else "phone") if kind is None else kind, "")
        if not column:
            return
        slot = self.checks.debtor_slot
        if raw[slot[column]]:
            message = f"{etree.QName(tag).localname} of type {kind!r} is given twice"
            found.append(Finding(Severity.ERROR, "duplicate_element", message, column))
        raw[slot[column]] = text or ""

    def debtor(self, raw: list[str], found: list[Finding], lines: Lines) -> Debtor | None:
        """The next debtor from its cells (``debtor_cells``) and the problems found in reading them; None when
        it has an error (its code is then blocked)."""
        checks = self.checks
        self.debtor_index += 1
        values, checked = checks.debtor(tuple(raw))
        found = checked + found
        if found:
            self.report(found, lines, f"/OpenItems/Debtor[{self.debtor_index}]", DEBTOR_PATHS)
            if any(f.severity is Severity.ERROR for f in found):
                code = raw[checks.debtor_slot["debtor_code"]].strip()
                if code:
                    self.snapshot.blocked_debtors.add(code)
                return None
        return Debtor(*in_field_order(values, checks.debtor_order))

    def new_date(self, raw: str) -> date:
        value = parse_date(raw)
        if len(self.dates) > 8192:
            self.dates.clear()
        self.dates[raw] = value
        return value

    def slow_invoice(
        self,
        texts: Mapping[str, str | None],
        number: str,
        document: str,
        lines: Lines,
        code: str,
        index: int,
        ok: bool,
    ) -> Invoice | None:
        """The generic payt-csv invoice checks, reporting every problem; None blocks the invoice. ``texts``: the
        invoice's child elements' texts by tag."""
        checks = self.checks
        raw = [""] * len(checks.invoice_names)
        raw[checks.number_slot] = number
        raw[checks.document_slot] = document
        slots = checks.invoice_slot
        for tag, text in texts.items():
            position = slots.get(tag)
            if position is not None:
                raw[position] = text or ""
        values, found = checks.invoice(tuple(raw))
        fields = {f: v for f, v in zip(checks.invoice_fields, values, strict=True) if f is not None}
        found.extend(invoice_rules(fields))
        if found:
            self.report(found, lines, f"/OpenItems/Debtor[{self.debtor_index}]/Invoice[{index}]", INVOICE_PATHS)
        if not ok or any(f.severity is Severity.ERROR for f in found):
            number = number.strip()
            if number:
                self.snapshot.blocked_invoices.add(number)
            if code:
                self.snapshot.blocked_debtors.add(code)
            return None
        return Invoice(debtor_code=code, **fields)


_UNTYPED = {"Email": 'p:Email[not(@type) or @type="default"]', "Phone": 'p:Phone[not(@type) or @type="phone"]'}


def _line_of(element: Any, relative: str) -> int | None:
    """The source line of the element at ``relative`` (a path as in DEBTOR_PATHS) below ``element``."""
    path = relative.split("/@")[0] if not relative.startswith("@") else ""
    if not path:
        return element.sourceline  # type: ignore[no-any-return]
    steps = _UNTYPED.get(path) or "/".join(f"p:{step}" for step in path.split("/"))
    found = element.xpath(steps, namespaces={"p": NS})
    return found[0].sourceline if found else None
