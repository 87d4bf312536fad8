"""payt-csv: a streaming reader for open-items CSV files (FORMATS.md §1) -> Snapshot.

``parse_payt_csv`` does the file-level work eagerly (encoding pre-scan, header, column mapping) and
raises ``RejectFile`` for anything that rejects the whole file; its problems have ``row`` None, as
file-level errors do in CONTRACT.md, and the message names the line where there is one. It returns a
Snapshot whose ``entries`` is a generator: rows are read, validated and turned into ``Entry`` objects
only while it is consumed, in bounded memory. Row problems, blocked keys and the row count are filled
in as it goes; a file error found mid-stream (a broken quote, a record over the size limit) is raised
from the generator.

Speed (about 210,000 rows/s for a realistic 25-column file on the 2-core reference machine):
- a physical line without a quote character is split with ``str.split``, which is what RFC 4180 reading
  gives for it; a line with a quote goes through a strict ``csv.reader`` that pulls continuation lines;
- debtor data repeats on every invoice row of a debtor: a row whose debtor cells equal the previous
  row's reuses its validated ``Debtor``; other rows look in a bounded cache keyed by the raw cells. When
  that cache serves under 5 % of the debtor changes (an export that keeps a debtor's rows together) it
  is dropped: it would only cost hashing, memory and garbage-collector time;
- the invoice cells take a fast path (cached dates, a regex-guarded ``Decimal``) that handles clean,
  typical values; anything unusual goes to the generic, spec-driven validation, which is the one that
  reports problems. Both paths give the same result (a property test checks this).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import io
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any, BinaryIO, NamedTuple, TypeVar

from gateway.errors import RejectFile
from gateway.records import Debtor, Entry, Invoice, Problem, Severity, Snapshot, error, notice, warning
from parsers.column_spec import CsvSpec, load_spec, normalise_header
from parsers.csv_values import (
    COUNTRIES,
    CURRENCIES,
    DATE_ORDERS,
    SIMPLE_AMOUNT,
    InvalidValue,
    parse_amount,
    parse_date,
    parse_date_or_datetime,
)
from parsers.row_checks import (
    MAX_PROBLEMS_PER_CODE,
    VALUE_CACHE_SIZE,
    CellsCheck,
    Finding,
    cells_getter,
    field_order,
    in_field_order,
    invoice_rules,
    open_warning,
    shown,
    truncation_notices,
)

FORMAT = "payt-csv"
SCAN_CHUNK = 1 << 16  # bytes per read of the encoding pre-scan (larger reads make glibc keep ~100 MB)
MAX_RECORD_CHARS = 1 << 20  # one record (all its physical lines) above this rejects the file
DEBTOR_CACHE_SIZE = 32768  # validated debtors kept (two generations of half this), keyed by raw cells
CACHE_PROBE = 4096  # after this many misses, a cache that served under 5 % of debtor changes is dropped
DELIMITERS = (";", "\t", ",")  # in order of preference when a header line has as many of each
ADMINISTRATION_COLUMN = "administration_code"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How to read one administration's payt-csv file."""

    administration_code: str  # the run's administration; another value in the column is a row error
    default_currency: str = "EUR"
    default_country: str | None = "NL"  # used when the country column is absent or empty
    date_order: str = "dmy"  # "dmy" | "mdy": how ambiguous dd-mm-yyyy / mm-dd-yyyy forms are read

    def __post_init__(self) -> None:
        if self.date_order not in DATE_ORDERS:
            raise ValueError(f"date_order must be one of {DATE_ORDERS}, not {self.date_order!r}")
        if self.default_currency not in CURRENCIES:
            raise ValueError(f"default_currency {self.default_currency!r} is not an ISO 4217 code")
        if self.default_country is not None and self.default_country not in COUNTRIES:
            raise ValueError(f"default_country {self.default_country!r} is not an ISO 3166-1 alpha-2 code")


def parse_payt_csv(source: BinaryIO, options: CsvOptions) -> Snapshot:
    """Read a payt-csv file. Raises RejectFile for file errors found before the first data row."""
    opened = open_payt_csv(source, options)
    opened.snapshot.entries = opened.entries()
    return opened.snapshot


@dataclass
class OpenedCsv:
    """A payt-csv file whose header has been read: its snapshot (``entries`` not set yet) and the reference
    row reader, for a caller that reads some of the rows another way (``gateway.csv_columnar``)."""

    source: BinaryIO
    snapshot: Snapshot
    parser: _RowParser
    reader: _Reader
    text: io.TextIOWrapper
    owned: bool  # ``source`` is our spooled copy of a stream that could not seek
    encoding: str

    @property
    def delimiter(self) -> str:
        return self.reader.delimiter

    @property
    def header_lines(self) -> int:
        """The physical lines up to and including the header (blank lines and a "sep=" line before it)."""
        return self.reader.number

    def entries(self) -> Iterator[Entry]:
        """The reference reader's entries of all the rows after the header."""
        return self.parser.entries(self.reader, self.text, self.owned)

    def entries_from(self, offset: int, lines_before: int) -> Iterator[Entry]:
        """The reference reader's entries of the rows that start at byte ``offset`` of the file, the start of
        physical line ``lines_before + 1``: for the rows that the caller leaves to the reference."""
        delimiter = self.reader.delimiter
        _release(self.text)
        self.source.seek(offset)
        self.text = _TextLayer(self.source, encoding=self.encoding, errors="strict", newline="")
        self.reader = _Reader(self.text)
        self.reader.start(delimiter)
        self.reader.number = lines_before
        return self.entries()

    def close(self) -> None:
        _release(self.text, self.owned)


def open_payt_csv(source: BinaryIO, options: CsvOptions) -> OpenedCsv:
    """Read a payt-csv file's encoding and header. Raises RejectFile for file errors found there."""
    spec = load_spec()
    owned = not source.seekable()
    if owned:
        source = _spool(source)
    encoding, problems = _detect_encoding(source)
    text = _TextLayer(source, encoding=encoding, errors="strict", newline="")
    reader = _Reader(text)
    try:
        header = _decoding(reader.header)
        layout = _Layout.from_header(header, reader.number, spec, options)
    except BaseException:
        _release(text, owned)
        raise
    snapshot = Snapshot(
        administration_code=options.administration_code,
        problems=problems + layout.notices,
        detected={"encoding": encoding, "delimiter": reader.delimiter, "date_order": options.date_order},
    )
    return OpenedCsv(source, snapshot, _RowParser(spec, options, layout, snapshot), reader, text, owned, encoding)


# ------------------------------------------------------------------------------------- bytes and text


def _spool(source: IO[bytes]) -> BinaryIO:
    """A seekable copy of a non-seekable stream (in memory up to 8 MiB, then on disk)."""
    copy = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed by _release)
    shutil.copyfileobj(source, copy, SCAN_CHUNK)
    copy.seek(0)
    return copy  # type: ignore[return-value]


class _TextLayer(io.TextIOWrapper):
    """The decoding layer over the caller's binary stream. Never closes that stream, not even when it is
    garbage-collected with an entries iterator that was never started (the caller owns the stream)."""

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.detach()


def _release(text: io.TextIOWrapper, close: bool = False) -> None:
    """Detach the text layer so that the caller's binary stream is not closed with it (or close our copy)."""
    with contextlib.suppress(ValueError):  # already detached, or the caller closed the stream
        binary = text.detach()
        if close:
            binary.close()


class _Bad(NamedTuple):
    byte_offset: int
    char_offset: int
    reason: str
    saw_non_ascii: bool


def _scan(source: BinaryIO, encoding: str) -> _Bad | None:
    """Decode the whole stream incrementally, chunk by chunk; report the first undecodable byte or NUL."""
    start = source.tell()
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    byte_pos = char_pos = 0
    non_ascii = False
    try:
        while True:
            chunk = source.read(SCAN_CHUNK)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                valid_part = exc.object[: exc.start]
                return _Bad(byte_pos - pending + exc.start, char_pos, exc.reason, non_ascii or not valid_part.isascii())
            nul = text.find("\x00")
            if nul >= 0:
                return _Bad(-1, char_pos + nul, "NUL", non_ascii)
            non_ascii = non_ascii or not text.isascii()
            if not chunk:
                return None
            byte_pos += len(chunk)
            char_pos += len(text)
    finally:
        source.seek(start)


def _line_at(source: BinaryIO, encoding: str, char_offset: int) -> int:
    """The physical line (1-based) holding character ``char_offset`` of the decoded stream."""
    start = source.tell()
    text = io.TextIOWrapper(source, encoding=encoding, errors="replace", newline="")
    try:
        seen = 0
        for number, line in enumerate(iter(lambda: text.readline(SCAN_CHUNK), ""), 1):
            seen += len(line)
            if seen > char_offset:
                return number
        return 1
    finally:
        _release(text)
        source.seek(start)


def _detect_encoding(source: BinaryIO) -> tuple[str, list[Problem]]:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252; a streaming pre-scan, no slurping."""
    start = source.tell()
    head = source.read(4)
    source.seek(start)
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    bad = _scan(source, encoding)
    problems: list[Problem] = []
    if bad is not None and bad.reason != "NUL" and encoding == "utf-8":
        first_bad = bad
        bad = _scan(source, "cp1252")
        if bad is not None and bad.reason != "NUL":
            raise RejectFile(
                [
                    error(
                        "not_decodable",
                        f"the file is neither UTF-8 nor Windows-1252: the byte at offset {bad.byte_offset} "
                        "is undefined in Windows-1252",
                    )
                ]
            )
        encoding = "cp1252"
        problems.append(
            notice(
                "encoding_windows_1252",
                f"the file is not valid UTF-8 (byte offset {first_bad.byte_offset}); read as Windows-1252",
            )
        )
        if first_bad.saw_non_ascii:
            problems.append(
                warning(
                    "mixed_encoding",
                    "the file has UTF-8 characters before an invalid UTF-8 byte at offset "
                    f"{first_bad.byte_offset}: it mixes encodings, check accented characters",
                )
            )
    if bad is not None:
        if bad.reason == "NUL":
            line = _line_at(source, encoding, bad.char_offset)
            raise RejectFile([error("nul_byte", f"line {line} contains a NUL byte: not a text file")])
        raise RejectFile([error("not_decodable", f"the file is not valid {encoding}: byte offset {bad.byte_offset}")])
    return encoding, problems


def _decoding(read: Callable[[], T]) -> T:
    """Run ``read``; a decoding error now (the pre-scan passed) means the file changed while being read."""
    try:
        return read()
    except UnicodeDecodeError as exc:
        raise _changed(exc) from None


def _changed(exc: UnicodeDecodeError) -> RejectFile:
    return RejectFile([error("not_decodable", f"the file changed while it was read: {exc.reason}")])


def _detect_delimiter(line: str) -> str:
    unquoted = re.sub(r'"[^"]*"', "", line)
    counts = [unquoted.count(d) for d in DELIMITERS]
    best = max(range(len(DELIMITERS)), key=lambda i: (counts[i], -i))
    return DELIMITERS[best]


def _too_long(line: int) -> RejectFile:
    return RejectFile(
        [
            error(
                "record_too_long",
                f"the record starting on line {line} is longer than {MAX_RECORD_CHARS} characters (an unclosed quote?)",
            )
        ]
    )


def _csv_reject(exc: csv.Error, line: int) -> RejectFile:
    message = str(exc)
    if "field larger than field limit" in message:
        code, message = "field_too_large", f"{message} (an unclosed quote?)"
    else:
        code = "malformed_csv"
    return RejectFile([error(code, f"the record starting on line {line}: {message}")])


class _Reader:
    """Physical lines (LF, CRLF or CR ends) and records of a text stream, never holding a huge line.

    ``lines`` yields lines of at most MAX_RECORD_CHARS + 1 characters (a C-level iterator, no Python
    frame per line). A line without a quote character is a whole record and is split on the delimiter,
    which is exactly what RFC 4180 reading gives for it; ``quoted`` hands a line with a quote to a strict
    csv reader, which pulls the continuation lines of quoted line breaks from the same iterator.
    """

    def __init__(self, text: io.TextIOWrapper):
        self.lines: Iterator[str] = iter(functools.partial(text.readline, MAX_RECORD_CHARS + 1), "")
        self.delimiter = ","
        self.number = 0  # physical lines read so far
        self._pending: str | None = None
        self._start = self._extra = self._chars = 0
        self._csv: Iterator[list[str]] = iter(())

    def header(self) -> list[str]:
        """Skip leading blank lines and an Excel "sep=;" line, detect the delimiter, read the header."""
        delimiter: str | None = None
        for line in self.lines:
            self.number += 1
            content = line.rstrip("\r\n")
            if not content.strip():
                continue
            if delimiter is None and len(content) == 5 and content.lower().startswith("sep="):
                delimiter = content[4] if content[4] in DELIMITERS else None
                if delimiter is not None:
                    continue
            self.start(delimiter or _detect_delimiter(line))
            return self.record(line)
        raise RejectFile([error("empty_file", "the file is empty: no header line")])

    def start(self, delimiter: str) -> None:
        """Read records separated by ``delimiter`` (found in the header) from here on."""
        self.delimiter = delimiter
        self._csv = csv.reader(self._continuation(), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)

    def record(self, line: str) -> list[str]:
        """The record starting with ``line`` (just read, and counted in ``number``)."""
        if len(line) > MAX_RECORD_CHARS:
            raise _too_long(self.number)
        if '"' not in line:
            return line.rstrip("\r\n").split(self.delimiter)
        row, extra = self.quoted(line, self.number)
        self.number += extra
        return row

    def quoted(self, line: str, number: int) -> tuple[list[str], int]:
        """A record with quotes starting with ``line`` on line ``number``, and its continuation lines."""
        self._pending, self._start, self._extra, self._chars = line, number, 0, len(line)
        try:
            return next(self._csv), self._extra
        except csv.Error as exc:
            raise _csv_reject(exc, number) from None
        except StopIteration:  # the pending line is always there; kept for completeness
            raise RejectFile([error("malformed_csv", f"line {number}: no record")]) from None

    def _continuation(self) -> Iterator[str]:
        while True:
            if self._pending is not None:
                head, self._pending = self._pending, None
                yield head
                continue
            line = next(self.lines, "")
            if not line:
                return  # the strict csv reader reports an unclosed quote as "unexpected end of data"
            self._extra += 1
            self._chars += len(line)
            if self._chars > MAX_RECORD_CHARS:
                raise _too_long(self._start)
            yield line


# -------------------------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each canonical column sits in this file's rows. Absent columns point at a padding cell."""

    width: int  # header fields; the padding "" is appended at index ``width``
    named_width: int  # header fields up to the last named one (rows may leave out unnamed trailing ones)
    index: dict[str, int]
    notices: list[Problem]

    @classmethod
    def from_header(cls, header: list[str], line: int, spec: CsvSpec, options: CsvOptions) -> _Layout:
        index: dict[str, int] = {}
        unknown: list[str] = []
        problems: list[Problem] = []
        for position, raw in enumerate(header):
            if not normalise_header(raw):
                continue  # an unnamed column (a trailing separator) is ignored silently
            name = spec.match(raw)
            if name is None:
                unknown.append(raw.strip())
            elif name in index:
                first = header[index[name]].strip()
                problems.append(
                    error("duplicate_column", f"columns {first!r} and {raw.strip()!r} both mean {name}", None, name)
                )
            else:
                index[name] = position
        for col in spec.columns:
            if not col.required or col.name in index:
                continue
            if col.default_from is not None and getattr(options, col.default_from) is not None:
                continue
            problems.append(
                error(
                    "missing_column",
                    f"required column {col.name} is missing (accepted names: {col.accepted_names()})",
                    None,  # a file error (CONTRACT.md: file-level errors have "row": null)
                    col.name,
                )
            )
        for group in spec.required_one_of:
            if not any(c in index for c in group.columns):
                names = "; or ".join(f"{c} ({spec.by_name[c].accepted_names()})" for c in group.columns)
                problems.append(
                    error("missing_column", f"one of these columns is required: {names}", None, group.columns[0])
                )
        if problems:
            raise RejectFile(problems)
        notices = []
        if unknown:
            listed = ", ".join(repr(u) for u in dict.fromkeys(unknown))
            notices.append(notice("unknown_columns", f"ignored unknown columns: {listed}", line))
        named = [i for i, raw in enumerate(header) if normalise_header(raw)]
        return cls(len(header), named[-1] + 1 if named else 0, index, notices)

    def position(self, name: str) -> int:
        return self.index.get(name, self.width)


# ---------------------------------------------------------------------------------------- validation

# The invoice-side columns the fast path knows, in the order it unpacks them, with their record fields.
_FAST_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("administration_code", "text", None),
    ("invoice_number", "text", "number"),
    ("invoice_date", "date", "invoice_date"),
    ("invoice_due_date", "date", "due_date"),
    ("invoice_total_amount_inc_vat", "decimal", "amount_total"),
    ("invoice_open_amount_inc_vat", "decimal", "amount_open"),
    ("invoice_currency_code", "currency", "currency"),
    ("invoice_description", "text", "description"),
    ("invoice_payment_condition", "text", "payment_condition"),
    ("invoice_payment_reference", "text", "payment_reference"),
    ("invoice_order_number", "text", "order_number"),
    ("invoice_sent_at", "date_or_datetime", "sent_at"),
    ("invoice_document_filename", "text", "document_filename"),
)
_FAST_REQUIRED = frozenset(
    {
        "invoice_number",
        "invoice_date",
        "invoice_due_date",
        "invoice_total_amount_inc_vat",
        "invoice_open_amount_inc_vat",
    }
)


class _Slow(Exception):
    """The fast path met something it does not handle: the row goes through the generic validation."""


# ----------------------------------------------------------------------------------------------- rows


class _RowParser:
    """Validates the rows of one file; holds its caches and problem counts."""

    def __init__(self, spec: CsvSpec, options: CsvOptions, layout: _Layout, snapshot: Snapshot):
        self.spec = spec
        self.options = options
        self.layout = layout
        self.snapshot = snapshot
        debtor_columns = spec.record_columns("debtor")
        invoice_columns = tuple(c for c in spec.columns if c.record != "debtor")
        self.debtor_checks = CellsCheck(debtor_columns, options, spec.required_one_of)
        self.invoice_checks = CellsCheck(invoice_columns, options, spec.required_one_of)
        self.debtor_fields = tuple(c.field or c.name for c in debtor_columns)
        self.debtor_order = field_order(Debtor, self.debtor_fields)
        self.invoice_fields = tuple(c.field for c in invoice_columns)
        self.debtor_cells = cells_getter(layout.position(c.name) for c in debtor_columns)
        self.invoice_cells = cells_getter(layout.position(c.name) for c in invoice_columns)
        self.code_position = layout.position("debtor_code")
        self.number_position = layout.position("invoice_number")
        self.counts: dict[str, int] = {}
        self.fast = (
            {(c.name, c.type, c.field) for c in invoice_columns} == set(_FAST_COLUMNS)
            and {c.name for c in invoice_columns if c.required} == _FAST_REQUIRED
            and len({c.max_length for c in invoice_columns if c.type == "text"}) == 1
            and spec.by_name["invoice_currency_code"].default_from == "default_currency"
            and not self.invoice_checks.one_of
        )

    # -- problems and blocked keys

    def report(self, found: Iterable[Finding], line: int) -> None:
        problems = self.snapshot.problems
        counts = self.counts
        for f in found:
            n = counts.get(f.code, 0) + 1
            counts[f.code] = n
            if n <= MAX_PROBLEMS_PER_CODE:
                problems.append(Problem(f.severity, f.code, f.message, line, f.column))

    def block(self, row: list[str]) -> None:
        """A row with an error: its invoice and debtor get no update and do not count as disappeared."""
        if self.number_position < len(row) and (number := row[self.number_position].strip()):
            self.snapshot.blocked_invoices.add(number)
        if self.code_position < len(row) and (code := row[self.code_position].strip()):
            self.snapshot.blocked_debtors.add(code)

    def finish(self) -> None:
        self.snapshot.problems.extend(truncation_notices(self.counts))

    # -- the generic validation (the reference; the only one that reports problems)

    def check_debtor(self, cells: tuple[str, ...]) -> tuple[Debtor | None, tuple[Finding, ...]]:
        values, found = self.debtor_checks(cells)
        if found and any(f.severity is Severity.ERROR for f in found):
            return None, tuple(found)
        return Debtor(*in_field_order(values, self.debtor_order)), tuple(found)

    def check_invoice(self, row: list[str], debtor_code: str | None) -> tuple[Invoice | None, list[Finding]]:
        cells = self.invoice_cells(row)
        values, found = self.invoice_checks(cells)
        fields: dict[str, Any] = {}
        for field, check, value in zip(self.invoice_fields, self.invoice_checks.checks, values, strict=True):
            if field is not None:
                fields[field] = value
            elif check.col.name == ADMINISTRATION_COLUMN and value not in (None, self.options.administration_code):
                found.append(
                    Finding(
                        Severity.ERROR,
                        "wrong_administration",
                        f"Administration code {shown(value)} is not this import's administration "
                        f"{self.options.administration_code!r}",
                        ADMINISTRATION_COLUMN,
                    )
                )
        found.extend(invoice_rules(fields))
        if debtor_code is None or any(f.severity is Severity.ERROR for f in found):
            return None, found
        return Invoice(debtor_code=debtor_code, **fields), found

    def slow_row(self, row: list[str], line: int, debtor: Debtor | None) -> Entry | None:
        invoice, found = self.check_invoice(row, debtor.code if debtor is not None else None)
        self.report(found, line)
        if debtor is None or invoice is None:
            self.block(row)
            return None
        return Entry(line, debtor, invoice)

    def odd_width(self, row: list[str], line: int) -> list[str] | None:
        """A record whose field count differs from the header's: blank, tolerable, or a row error."""
        width = self.layout.width
        if not "".join(row).strip():
            return None
        if len(row) > width and not "".join(row[width:]).strip():
            del row[width:]
            return row
        if self.layout.named_width <= len(row) < width:
            row.extend([""] * (width - len(row)))
            return row
        self.snapshot.rows += 1
        message = f"row has {len(row)} fields, the header has {width}"
        self.report([Finding(Severity.ERROR, "field_count", message, None)], line)
        self.block(row)
        return None

    # -- the stream

    def entries(self, reader: _Reader, text: io.TextIOWrapper, owned: bool) -> Iterator[Entry]:
        try:
            yield from self._rows(reader)
            self.finish()
        except UnicodeDecodeError as exc:
            raise _changed(exc) from None
        finally:
            _release(text, owned)

    def _rows(self, reader: _Reader) -> Iterator[Entry]:
        """The hot loop: kept in one frame, with everything it touches in local variables."""
        snapshot = self.snapshot
        width = self.layout.width
        debtor_cells = self.debtor_cells
        check_debtor = self.check_debtor
        report = self.report
        slow_row = self.slow_row
        odd_width = self.odd_width
        quoted = reader.quoted
        delimiter = reader.delimiter
        limit = MAX_RECORD_CHARS
        young: dict[tuple[str, ...], tuple[Debtor | None, tuple[Finding, ...]]] = {}
        old: dict[tuple[str, ...], tuple[Debtor | None, tuple[Finding, ...]]] = {}
        generation = DEBTOR_CACHE_SIZE // 2
        caching = True
        changes = misses = 0  # debtor changes from one row to the next, and the cache misses among them
        last_key: tuple[str, ...] | None = None
        debtor: Debtor | None = None
        debtor_found: tuple[Finding, ...] = ()
        fast = self.fast
        invoice_cells = cells_getter(self.layout.position(name) for name, _, _ in _FAST_COLUMNS)
        run_administration = self.options.administration_code
        text_limit = self.spec.by_name["invoice_number"].max_length
        default_currency = self.options.default_currency
        currencies = CURRENCIES
        simple_amount = SIMPLE_AMOUNT.fullmatch
        date_order = self.options.date_order
        dates: dict[str, date] = {}
        sent_values: dict[str, date | datetime] = {}
        cached_date = dates.get
        cached_sent = sent_values.get
        new_date = _cached_parser(dates, lambda s: parse_date(s, date_order))
        new_sent = _cached_parser(sent_values, lambda s: parse_date_or_datetime(s, date_order))
        number = reader.number
        rows = snapshot.rows  # 0, unless another reader read the rows before ``reader``'s

        for text_line in reader.lines:
            number += 1
            line = number
            if '"' in text_line:
                row, extra = quoted(text_line, line)
                number += extra
            elif len(text_line) > limit:
                raise _too_long(line)
            else:
                row = text_line.rstrip("\r\n").split(delimiter)
            if len(row) != width:
                fixed = odd_width(row, line)
                rows = snapshot.rows
                if fixed is None:
                    continue
                row = fixed
            row.append("")
            key = debtor_cells(row)
            if key != last_key:
                found = young.get(key) if caching else None
                if found is None:
                    found = (old.get(key) if caching else None) or check_debtor(key)
                    if caching:
                        young[key] = found
                        if len(young) >= generation:
                            old, young = young, {}
                        misses += 1
                        if misses == CACHE_PROBE and changes - misses < CACHE_PROBE // 20:
                            caching = False  # each debtor's rows are consecutive: the previous row suffices
                            young, old = {}, {}
                changes += 1
                last_key = key
                debtor, debtor_found = found
            if debtor is None:
                if not "".join(row).strip():
                    continue  # a record of empty fields
                rows += 1
                snapshot.rows = rows
                report(debtor_found, line)
                slow_row(row, line, None)
                continue
            rows += 1
            snapshot.rows = rows
            if debtor_found:
                report(debtor_found, line)
            if not fast:
                entry = slow_row(row, line, debtor)
                if entry is not None:
                    yield entry
                continue
            try:
                (
                    administration,
                    invoice_number,
                    invoice_date_s,
                    due_date_s,
                    total_s,
                    open_s,
                    currency,
                    description,
                    condition,
                    reference,
                    order_number,
                    sent_s,
                    document,
                ) = invoice_cells(row)
                if administration and administration != run_administration:
                    raise _Slow
                invoice_number = invoice_number.strip()
                if not invoice_number or len(invoice_number) > text_limit:
                    raise _Slow
                invoice_date = cached_date(invoice_date_s) or new_date(invoice_date_s)
                due_date = cached_date(due_date_s) or new_date(due_date_s)
                if due_date < invoice_date:
                    raise _Slow
                total = Decimal(total_s.replace(",", ".")) if simple_amount(total_s) else _amount(total_s)
                if open_s == total_s:
                    open_ = total
                else:
                    open_ = Decimal(open_s.replace(",", ".")) if simple_amount(open_s) else _amount(open_s)
                if currency not in currencies:
                    if currency:
                        raise _Slow
                    currency = default_currency
                if (
                    len(description) + len(condition) + len(reference) + len(order_number) + len(document) > text_limit
                    and max(map(len, (description, condition, reference, order_number, document))) > text_limit
                ):
                    raise _Slow
                sent = (cached_sent(sent_s) or new_sent(sent_s)) if sent_s else None
            except _Slow:
                entry = slow_row(row, line, debtor)
                if entry is not None:
                    yield entry
                continue
            if not (open_ is total or 0 <= open_ <= total or total <= open_ <= 0):
                report((open_warning(open_, total),), line)
            invoice = Invoice(
                invoice_number,
                debtor.code,
                invoice_date,
                due_date,
                total,
                open_,
                currency,
                (description.strip() or None) if description else None,
                (condition.strip() or None) if condition else None,
                (reference.strip() or None) if reference else None,
                (order_number.strip() or None) if order_number else None,
                sent,
                (document.strip() or None) if document else None,
            )
            yield Entry(line, debtor, invoice)


def _cached_parser(cache: dict[str, Any], parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A cache-filling parser for the fast path: parse and remember, or hand the row to the slow path."""

    def parse_new(raw: str) -> Any:
        try:
            value = parse(raw)
        except InvalidValue:
            raise _Slow from None
        if len(cache) >= VALUE_CACHE_SIZE:
            cache.clear()
        cache[raw] = value
        return value

    return parse_new


def _amount(raw: str) -> Decimal:
    try:
        return parse_amount(raw)
    except InvalidValue:
        raise _Slow from None
