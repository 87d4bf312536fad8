"""payt-xml: a streaming reader for open-items XML files (FORMATS.md §2, ``schemas/payt-xml-1.xsd``) -> Snapshot.

The same canonical snapshot as payt-csv, with the same business checks (``parsers.row_checks``): a debtor's
data is checked as the payt-csv debtor columns would be, an invoice as the invoice columns. A problem's
``row`` is the source line of the element and its ``column`` the element path
(``/OpenItems/Debtor[12]/Invoice[3]/DueDate``). A row error blocks that debtor or invoice, as in payt-csv.

Schema validation (``parsers.payt_xml_schema``) decides whether the file is taken at all:
- a small file (below ``XmlOptions.parallel_from_bytes``) is validated before ``parse_payt_xml`` returns;
  an invalid one raises ``RejectFile`` with every schema error located;
- a large file on disk is validated by a second process while this one extracts the entries (2 cores are
  used instead of one). The entries generator waits for its verdict after the last element and raises
  ``RejectFile`` if the file is invalid, so a consumer that stages entries in a transaction must not commit
  before the generator is exhausted (the pipeline does exactly that).

Memory stays bounded: every invoice is cleared once read, and every debtor once its invoices are done.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO

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
    problems_from_json,
    validate_payt_xml,
)
from parsers.row_checks import CellsCheck, Finding, invoice_rules, open_fits
from parsers.xml_safety import SAFE_OPTIONS, refuse_doctype, syntax_error

FORMAT = "payt-xml"
HEAD_CHUNK = 1 << 16
MAX_HEAD = 1 << 20  # the root element's start tag must begin within the first MiB
MAX_PROBLEMS_PER_CODE = 1000
PARALLEL_FROM_BYTES = 4 << 20  # from this size the schema is checked by a second process, in parallel
VALIDATOR_TIMEOUT = 3600.0

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
    checks = _Checks(XmlOptions(options.administration_code, currency, options.default_country))
    snapshot.entries = _Extractor(checks, snapshot).entries(source, parallel)
    return snapshot


# ------------------------------------------------------------------------------------------ the head


def _read_head(source: BinaryIO) -> _Head:
    """The root element's attributes, read safely from the head of the file; DOCTYPE and other roots refused."""
    parser = etree.XMLPullParser(events=("start",), **SAFE_OPTIONS)
    read = 0
    try:
        while read < MAX_HEAD:
            chunk = source.read(HEAD_CHUNK)
            read += len(chunk)
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
            for _, root in parser.read_events():
                refuse_doctype(root)
                return _head_of(root)
            if not chunk:
                break
    except etree.XMLSyntaxError as exc:
        for _, root in parser.read_events():
            refuse_doctype(root)  # a DOCTYPE is the reason to give, not what its entities broke
        raise syntax_error(exc) from None
    raise RejectFile([error("empty_file", "the file holds no XML element within its first MiB")])


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


# ----------------------------------------------------------------------------------- the validator


def _parallel_source(source: BinaryIO, options: XmlOptions) -> tuple[int, int] | None:
    """(file descriptor, offset) when the schema check should run in a second process, else None."""
    try:
        fd = source.fileno()
        size = os.fstat(fd).st_size
    except (AttributeError, OSError, ValueError):
        return None
    offset = source.tell()
    return (fd, offset) if size - offset >= options.parallel_from_bytes else None


class _Validator:
    """``python -m parsers.payt_xml_schema FD OFFSET`` as a child process that reads the same file."""

    def __init__(self, fd: int, offset: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parsers.payt_xml_schema", str(fd), str(offset)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(fd,),
        )

    def verdict(self) -> list[Problem]:
        out, err = self.proc.communicate(timeout=VALIDATOR_TIMEOUT)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the payt-xml validator exited with {self.proc.returncode}: {err.decode()[-2000:]}")
        return problems_from_json(out.decode("utf-8"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.communicate(timeout=10)


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
        self.debtor_fields = [c.field or c.name for c in debtor_columns]
        self.debtor_slot = {name: i for i, name in enumerate(self.debtor_names)}
        self.invoice_names = [c.name for c in invoice_columns]
        self.invoice_fields = [c.field for c in invoice_columns]
        slot = {name: i for i, name in enumerate(self.invoice_names)}
        self.invoice_slot = {_q(path): slot[column] for column, path in INVOICE_PATHS.items() if path.isalpha()}
        self.number_slot = slot["invoice_number"]
        self.document_slot = slot["invoice_document_filename"]
        self.text_limit = spec.by_name["invoice_number"].max_length


class _Extractor:
    def __init__(self, checks: _Checks, snapshot: Snapshot):
        self.checks = checks
        self.snapshot = snapshot
        self.counts: dict[str, int] = {}
        self.debtor_index = 0
        self.dates: dict[str, date] = {}

    # -- problems

    def report(self, found: list[Finding], element: Any, base: str, paths: dict[str, str]) -> None:
        problems = self.snapshot.problems
        for f in found:
            n = self.counts.get(f.code, 0) + 1
            self.counts[f.code] = n
            if n > MAX_PROBLEMS_PER_CODE:
                continue
            relative = paths.get(f.column or "", "")
            path = relative if relative.startswith("/") else f"{base}/{relative}" if relative else base
            line = _line_of(element, relative) if relative and not relative.startswith("/") else None
            problems.append(Problem(f.severity, f.code, f.message, line or element.sourceline, path))

    def finish(self) -> None:
        for code, n in self.counts.items():
            if n > MAX_PROBLEMS_PER_CODE:
                self.snapshot.problems.append(
                    notice(
                        "problems_truncated",
                        f"{n - MAX_PROBLEMS_PER_CODE} more {code!r} problems are not listed ({n} in total)",
                    )
                )

    # -- the stream

    def entries(self, source: BinaryIO, parallel: tuple[int, int] | None) -> Iterator[Entry]:
        validator = _Validator(*parallel) if parallel is not None else None
        try:
            yield from self._elements(source)
            if validator is not None:
                problems = validator.verdict()
                if any(p.severity is Severity.ERROR for p in problems):
                    raise RejectFile(problems)
            if self.snapshot.explicit_empty and self.snapshot.rows:
                raise RejectFile(
                    [
                        error(
                            "empty_not_empty",
                            f'OpenItems says empty="true" but holds {self.snapshot.rows} invoices',
                            1,
                            "/OpenItems/@empty",
                        )
                    ]
                )
            self.finish()
        except RejectFile:
            raise
        except Exception:
            if validator is not None:
                problems = validator.verdict()  # an invalid file explains a surprise better than a traceback
                if any(p.severity is Severity.ERROR for p in problems):
                    raise RejectFile(problems) from None
            raise
        finally:
            if validator is not None:
                validator.stop()

    def _elements(self, source: BinaryIO) -> Iterator[Entry]:
        snapshot = self.snapshot
        parser = etree.iterparse(source, events=("end",), tag=(DEBTOR, INVOICE), **SAFE_OPTIONS)
        current: Any = None
        debtor: Debtor | None = None
        code = ""
        invoice_index = 0
        read_invoice = self.read_invoice
        try:
            for _, element in parser:
                if element.tag == INVOICE:
                    parent = element.getparent()
                    if parent is None or parent.tag != DEBTOR:
                        continue  # not where the schema allows it: the validation rejects the file
                    if parent is not current:
                        current = parent
                        self.debtor_index += 1
                        invoice_index = 0
                        debtor = self.read_debtor(parent)
                        code = (parent.get("code") or "").strip()
                    invoice_index += 1
                    snapshot.rows += 1
                    entry = read_invoice(element, debtor, code, invoice_index)
                    element.clear()
                    if entry is not None:
                        yield entry
                    continue
                if element is not current:
                    self.debtor_index += 1
                    snapshot.problems.append(
                        notice(
                            "debtor_without_invoices",
                            f"debtor {element.get('code')} has no invoices; it is not imported",
                            element.sourceline,
                            f"/OpenItems/Debtor[{self.debtor_index}]",
                        )
                    )
                current = None
                element.clear()
                root = element.getparent()
                if root is not None:
                    while element.getprevious() is not None:
                        del root[0]
        except etree.XMLSyntaxError as exc:
            raise syntax_error(exc) from None

    # -- records

    def read_debtor(self, element: Any) -> Debtor | None:
        """The debtor's data (its children before the first invoice), checked as payt-csv debtor columns."""
        checks = self.checks
        raw = [""] * len(checks.debtor_names)
        slot = checks.debtor_slot
        raw[slot["debtor_code"]] = element.get("code") or ""
        raw[slot["debtor_is_company"]] = element.get("isCompany") or ""
        found: list[Finding] = []
        for child in element:
            tag = child.tag
            if tag == INVOICE:
                break
            if tag == _ADDRESS:
                for part in child:
                    column = _ADDRESS_CHILDREN.get(part.tag)
                    if column is not None:
                        raw[slot[column]] = part.text or ""
                continue
            if tag == _EMAIL:
                column = _EMAIL_TYPES.get(child.get("type", "default"), "")
            elif tag == _PHONE:
                column = _PHONE_TYPES.get(child.get("type", "phone"), "")
            else:
                column = _DEBTOR_CHILDREN.get(tag, "")
            if not column:
                continue
            if raw[slot[column]] and tag in (_EMAIL, _PHONE):
                message = f"{etree.QName(tag).localname} of type {child.get('type')!r} is given twice"
                found.append(Finding(Severity.ERROR, "duplicate_element", message, column))
            raw[slot[column]] = child.text or ""
        values, checked = checks.debtor(tuple(raw))
        found = checked + found
        base = f"/OpenItems/Debtor[{self.debtor_index}]"
        if found:
            self.report(found, element, base, DEBTOR_PATHS)
            if any(f.severity is Severity.ERROR for f in found):
                code = raw[slot["debtor_code"]].strip()
                if code:
                    self.snapshot.blocked_debtors.add(code)
                return None
        return Debtor(**dict(zip(checks.debtor_fields, values, strict=True)))

    def read_invoice(self, element: Any, debtor: Debtor | None, code: str, index: int) -> Entry | None:
        checks = self.checks
        raw = [""] * len(checks.invoice_names)
        slots = checks.invoice_slot
        raw[checks.number_slot] = number = element.get("number") or ""
        for child in element:
            position = slots.get(child.tag)
            if position is not None:
                raw[position] = child.text or ""
            elif child.tag == _DOCUMENT:
                raw[checks.document_slot] = child.get("filename") or ""
        invoice = self.fast_invoice(raw, code) if debtor is not None else None
        if invoice is None:
            invoice = self.slow_invoice(raw, element, code, index, debtor is not None)
        if invoice is None or debtor is None:
            number = number.strip()
            if number:
                self.snapshot.blocked_invoices.add(number)
            if code:
                self.snapshot.blocked_debtors.add(code)
            return None
        return Entry(element.sourceline, debtor, invoice)

    def fast_invoice(self, raw: list[str], code: str) -> Invoice | None:
        """Clean, typical values (what a schema-valid file holds) without the generic checks; None otherwise."""
        (
            _,
            number,
            invoice_s,
            due_s,
            total_s,
            open_s,
            currency,
            description,
            condition,
            reference,
            order,
            sent,
            doc,
        ) = raw
        limit = self.checks.text_limit
        if sent or not number or number != number.strip() or len(number) > limit:
            return None
        if not (SIMPLE_AMOUNT.fullmatch(total_s) and SIMPLE_AMOUNT.fullmatch(open_s)) or "," in total_s + open_s:
            return None
        if currency and currency not in CURRENCIES:
            return None
        if max(len(description), len(condition), len(reference), len(order), len(doc)) > limit:
            return None
        try:
            invoice_date = self.dates.get(invoice_s) or self.new_date(invoice_s)
            due_date = self.dates.get(due_s) or self.new_date(due_s)
        except InvalidValue:
            return None
        total, open_ = Decimal(total_s), Decimal(open_s)
        if due_date < invoice_date or not open_fits(open_, total):
            return None
        return Invoice(
            number,
            code,
            invoice_date,
            due_date,
            total,
            open_,
            currency or self.checks.options.default_currency,
            description.strip() or None,
            condition.strip() or None,
            reference.strip() or None,
            order.strip() or None,
            None,
            doc.strip() or None,
        )

    def new_date(self, raw: str) -> date:
        value = parse_date(raw)
        if len(self.dates) > 8192:
            self.dates.clear()
        self.dates[raw] = value
        return value

    def slow_invoice(self, raw: list[str], element: Any, code: str, index: int, debtor_ok: bool) -> Invoice | None:
        """The generic payt-csv invoice checks, reporting every problem."""
        checks = self.checks
        values, found = checks.invoice(tuple(raw))
        fields = {f: v for f, v in zip(checks.invoice_fields, values, strict=True) if f is not None}
        found.extend(invoice_rules(fields))
        if found:
            self.report(found, element, f"/OpenItems/Debtor[{self.debtor_index}]/Invoice[{index}]", INVOICE_PATHS)
        if not debtor_ok or any(f.severity is Severity.ERROR for f in found):
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
