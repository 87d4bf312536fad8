"""payt-csv read column-wise: the stage rows of a large file's clean blocks, computed by polars.

The reference is the row loop of ``parsers.payt_csv`` followed by ``StageRows``. Most of a large import's
worker time goes there to work that is the same for every row of a clean file: splitting lines, the invoice
cells' fast path, cents, building stage rows. This path does that work a block of lines at a time (polars,
one thread) and keeps only the debtors' validation (the reference's ``check_debtor``, once per change of
debtor) in Python. The parse worker uses it for payt-csv files (``gateway.parse_worker``).

It vouches only for what it proves equal to the reference. A block (about 4 MiB of whole lines) is read
here only when it has no quote character, no lone CR, no blank line, no line over the record limit, every
line has the header's field count, and every row would pass the reference's fast path without a single
problem (no error, warning or notice, its debtor neither). The first block that is not so, and every line
after it, goes to the reference reader (``OpenedCsv.entries_from``), which reports what it always reports.
So a clean file is read here from end to end, and a file with a problem up to the block that holds it. Only
files in UTF-8 (with or without BOM), with the reference's fast path on and no ignore lists, come here.

What may differ from the reference without changing what is stored: a debtor version row is staged when a
staged row's debtor cells differ from the previous staged row's (the reference: when its ``Debtor`` object
differs, which depends on its cache); at the hand-over the reference starts without a previous debtor, so
one extra, identical version row may be staged. The tests compare both paths' database states and reports.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from operator import attrgetter
from typing import BinaryIO

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # the importing process has the other core
import polars as pl  # after the thread count: polars reads it once, on import

from gateway.config import Administration
from gateway.formats import csv_options
from gateway.reconcile import decide_kind
from gateway.records import DEBTOR_DATA_FIELDS, Debtor
from gateway.stage_rows import CHUNK, Batch, InvoiceRow, StageRows, VersionRow
from parsers.csv_values import CURRENCIES, MAX_YEAR, MIN_YEAR
from parsers.payt_csv import MAX_RECORD_CHARS, OpenedCsv, open_payt_csv
from parsers.row_checks import Finding

BLOCK_BYTES = 4 << 20  # whole lines per block: a block's frame and rows are this path's memory
SHARED_VALUES = 8192  # distinct dates, currencies and kinds kept as one object each (a file has a few thousand)
COLUMNAR_ENCODINGS = frozenset({"utf-8", "utf-8-sig"})
# ``csv_values.SIMPLE_AMOUNT`` without its look-ahead: a minus sign needs a non-zero digit, checked apart.
_AMOUNT = r"^-?\d{1,15}(?:[.,]\d{1,2})?$"
_ISO_DAY = r"^\d{4}-\d{2}-\d{2}$"  # the reference's ISO form, written as ``date.isoformat`` writes it
# Bytes of a block that only the reference reads: a quote (RFC 4180 quoting), and what Python's str.strip()
# removes and polars' strip_chars() (Unicode White_Space) keeps: the information separators.
_REFERENCE_ONLY = (b'"', b"\x1c", b"\x1d", b"\x1e", b"\x1f")
_TEXT_COLUMNS = (
    "invoice_description",
    "invoice_payment_condition",
    "invoice_payment_reference",
    "invoice_order_number",
    "invoice_document_filename",
)
_debtor_values = attrgetter(*DEBTOR_DATA_FIELDS)
_Run = tuple[tuple[str, ...], Debtor, tuple[Finding, ...]]  # a run's debtor cells, its debtor and findings


class ColumnarRead:
    """A payt-csv file's snapshot (its header read: a file error there raised ``RejectFile``) and its stage
    rows, read block by block here while the blocks are clean, and by the reference after.

    ``rows_read`` counts the rows read here so far; ``handed_over`` is the line from which the reference
    reads (None while it does not)."""

    def __init__(self, stream: BinaryIO, admin: Administration, rows: StageRows, block_bytes: int = BLOCK_BYTES):
        start = stream.tell()
        self.opened = open_payt_csv(stream, csv_options(admin))
        self.snapshot = self.opened.snapshot
        self.rows_read = 0
        self.handed_over: int | None = None
        self._start, self._rows, self._block_bytes = start, rows, block_bytes

    def batches(self) -> Iterator[Batch]:
        opened, rows = self.opened, self._rows
        offset = _data_offset(opened, self._start) if _eligible(opened, rows) else None
        if offset is None:
            self.handed_over = opened.header_lines + 1
            yield from rows.batches(opened.entries())
            return
        reader = _BlockReader(opened, rows)
        line = opened.header_lines
        try:
            for block in _blocks(opened.source, offset, self._block_bytes):
                lines = block.count(b"\n") + (not block.endswith(b"\n"))
                staged = reader.block(block, line + 1, lines)
                if staged is None:
                    self.handed_over = line + 1
                    yield from rows.batches(opened.entries_from(offset, line))
                    return
                self.rows_read += lines
                yield from staged
                offset += len(block)
                line += lines
            opened.parser.finish()
        finally:
            opened.close()


def _eligible(opened: OpenedCsv, rows: StageRows) -> bool:
    return (
        opened.encoding in COLUMNAR_ENCODINGS and opened.parser.fast and not opened.owned and rows.policy.ignore.empty
    )


def _data_offset(opened: OpenedCsv, start: int) -> int | None:
    """The byte offset of the first line after the header, when every line up to it ends in LF or CRLF (so
    that bytes and the reference's text count lines alike); else None. Leaves the file where it was."""
    source = opened.source
    where = source.tell()
    try:
        source.seek(start)
        for _ in range(opened.header_lines):
            line = source.readline(4 * MAX_RECORD_CHARS + 2)
            if not line.endswith(b"\n") or line.count(b"\r") != line.endswith(b"\r\n"):
                return None
        return source.tell()
    finally:
        source.seek(where)


def _blocks(source: BinaryIO, offset: int, size: int) -> Iterator[bytes]:
    """Blocks of whole lines (the last line may lack its end), about ``size`` bytes each."""
    source.seek(offset)
    carry = b""
    while data := source.read(size):
        buffer = carry + data if carry else data
        cut = buffer.rfind(b"\n") + 1
        if cut == 0:
            carry = buffer
            continue
        yield buffer[:cut]
        carry = buffer[cut:]
    if carry:
        yield carry


def _blank_crlf_line(block: bytes) -> bool:
    return block.startswith(b"\r\n") or b"\n\r\n" in block


def _runs(names: list[str]) -> pl.Expr:
    """True on a block's first row and where a row's debtor cells differ from the previous row's."""
    return pl.any_horizontal([pl.col(n) != pl.col(n).shift(1) for n in names]).fill_null(True)


class _BlockReader:
    """Turns clean blocks into batches of stage rows; None for a block it does not vouch for."""

    def __init__(self, opened: OpenedCsv, rows: StageRows):
        parser = opened.parser
        self.snapshot = opened.snapshot
        self.rows = rows
        self.check_debtor = parser.check_debtor
        self.delimiter = opened.delimiter
        layout = parser.layout
        self.width = layout.width
        self.schema = {f"c{i}": pl.String for i in range(layout.width)}
        self.debtor_names = [c.name for c in parser.spec.record_columns("debtor")]
        self.position = {c.name: layout.index.get(c.name) for c in parser.spec.columns}
        self.limit = parser.spec.by_name["invoice_number"].max_length
        self.options = parser.options
        self.last_staged: tuple[str, ...] | None = None  # the debtor cells of the last staged row
        self.known: _Run | None = None  # the last debtor checked
        self.report = parser.report
        self._seen: dict[str, str] = {}
        self.values = self._values()
        self.screen = self._screen()
        self.kinds = self._kinds()

    def cell(self, name: str) -> pl.Expr:
        index = self.position[name]
        return pl.col(f"c{index}") if index is not None else pl.lit("", dtype=pl.String)

    def block(self, block: bytes, first_line: int, lines: int) -> list[Batch] | None:
        """The stage rows of ``block``, which holds ``lines`` lines from ``first_line`` on; None for a block this
        path does not vouch for."""
        if any(c in block for c in _REFERENCE_ONLY) or b"\n\n" in block or block.startswith(b"\n"):
            return None
        if b"\r" in block and (block.count(b"\r") != block.count(b"\r\n") or _blank_crlf_line(block)):
            return None
        if len(block) > MAX_RECORD_CHARS and max(map(len, block.split(b"\n"))) > MAX_RECORD_CHARS:
            return None
        if block.count(self.delimiter.encode()) != lines * (self.width - 1):
            return None
        try:
            frame = pl.read_csv(
                block,
                has_header=False,
                schema=self.schema,
                separator=self.delimiter,
                quote_char=None,
                empty_string_is_null=False,
                raise_if_empty=False,
            )
        except pl.exceptions.PolarsError:  # a line with more fields than the header
            return None
        if frame.height != lines:
            return None
        values = frame.with_columns(self.values)
        if not values.select(self.screen)[:, 0].all():
            return None
        invoices = values.with_columns(self.kinds)
        debtors = self._debtors(frame, first_line)
        if debtors is None:
            return None
        run_debtors, run_of_row = debtors
        self.snapshot.rows += lines
        return self._stage(invoices, run_debtors, run_of_row, first_line)

    def _debtors(self, frame: pl.DataFrame, first_line: int) -> tuple[list[_Run], pl.Series] | None:
        """Each run of rows with the same debtor cells: its cells and checked debtor; each row's run. A debtor's
        warnings and notices are reported on each of its rows, as the reference does; an error: None."""
        keys = frame.select(self.cell(n).alias(n) for n in self.debtor_names)
        change = keys.select(_runs(self.debtor_names))[:, 0]
        starts = change.arg_true().to_list()
        checked: list[_Run] = []
        reports: list[tuple[int, int, tuple[Finding, ...]]] = []
        for index, key in enumerate(keys[starts].rows()):
            known = self.known
            if known is None or known[0] != key:
                debtor, found = self.check_debtor(key)
                if debtor is None:
                    return None
                known = self.known = (key, debtor, found)
            if known[2]:
                end = starts[index + 1] if index + 1 < len(starts) else frame.height
                reports.append((first_line + starts[index], first_line + end, known[2]))
            checked.append(known)
        report = self.report
        for start, end, found in reports:
            for line in range(start, end):
                report(found, line)
        return checked, change.cast(pl.Int32).cum_sum() - 1

    def _values(self) -> list[pl.Expr]:
        """The invoice values the stage rows hold, computed once per block (``_screen`` reads them)."""
        cell = self.cell
        return [
            cell("invoice_number").str.strip_chars().alias("number"),
            cell("invoice_date").alias("invoice_date"),
            cell("invoice_due_date").alias("due_date"),
            _cents(cell("invoice_total_amount_inc_vat")).alias("total"),
            _cents(cell("invoice_open_amount_inc_vat")).alias("open"),
            *(_stripped(cell(n)).alias(n) for n in _TEXT_COLUMNS),
        ]

    def _screen(self) -> pl.Expr:
        """True for a row that the reference's fast path takes without a problem."""
        cell = self.cell
        limit = self.limit
        administration, currency = cell("administration_code"), cell("invoice_currency_code")
        number, total, open_ = pl.col("number"), pl.col("total"), pl.col("open")
        checks = [
            (administration == "") | (administration == self.options.administration_code),
            (number != "") & (number.str.len_chars() <= limit),
            _iso_day(pl.col("invoice_date")),
            _iso_day(pl.col("due_date")),
            pl.col("due_date") >= pl.col("invoice_date"),
            _simple_amount(cell("invoice_total_amount_inc_vat")),
            _simple_amount(cell("invoice_open_amount_inc_vat")),
            ((open_ >= 0) & (open_ <= total)) | ((total <= open_) & (open_ <= 0)),
            currency.is_in(sorted(CURRENCIES)) | (currency == ""),
            cell("invoice_sent_at") == "",
            *(cell(n).str.len_chars() <= limit for n in _TEXT_COLUMNS),
        ]
        return pl.all_horizontal(checks).fill_null(False)

    def _kinds(self) -> list[pl.Expr]:
        """The stage columns that follow from the values: currency (defaulted), kind, and its policy. The kind
        is ``reconcile.decide_kind``'s, column-wise; the policy of each kind is asked of ``decide_kind`` itself."""
        currency = self.cell("invoice_currency_code")
        total, open_ = pl.col("total"), pl.col("open")
        kind = (
            pl.when(total < 0)
            .then(pl.lit("credit_note"))
            .when(total == 0)
            .then(pl.lit("zero_amount"))
            .when(open_ == 0)
            .then(pl.lit("prepaid"))
            .otherwise(pl.lit("invoice"))
        )
        policy = dict(decide_kind(t, o, self.rows.policy.kinds) for t, o in ((-1, -1), (0, 0), (1, 0), (1, 1)))
        return [
            pl.when(currency == "").then(pl.lit(self.options.default_currency)).otherwise(currency).alias("currency"),
            kind.alias("kind"),
            kind.replace_strict(policy, return_dtype=pl.String).alias("policy"),
        ]

    def _stage(
        self,
        invoices: pl.DataFrame,
        run_debtors: list[_Run],
        run_of_row: pl.Series,
        first_line: int,
    ) -> list[Batch]:
        framed = invoices.with_columns(
            pl.int_range(first_line, first_line + invoices.height, dtype=pl.Int64).alias("line"),
            run_of_row.alias("run"),
            (pl.col("policy") == "import_and_send").alias("send"),
        )
        skip = framed["policy"] == "skip"
        if skip.any():
            skipped = framed.filter(skip)["number"]
            self.rows.blocked_invoices.update(skipped.to_list())
            self.rows.ignored += skipped.len()
            framed = framed.filter(~skip)
        runs = framed["run"].to_list()
        codes = [debtor.code for _, debtor, _ in run_debtors]
        shared = self._shared
        column = framed.get_column
        lines = column("line").to_list()
        invoice_rows = list(
            zip(
                lines,
                [codes[run] for run in runs],
                column("number").to_list(),
                shared(column("invoice_date")),
                shared(column("due_date")),
                column("total").to_list(),
                column("open").to_list(),
                shared(column("currency")),
                *(column(n).to_list() for n in _TEXT_COLUMNS[:4]),
                [None] * len(lines),
                column(_TEXT_COLUMNS[4]).to_list(),
                shared(column("kind")),
                column("send").to_list(),
                strict=True,
            )
        )
        version_rows: list[VersionRow] = []
        last = self.last_staged
        previous_run = -1
        for index, run in enumerate(runs):
            if run == previous_run:
                continue
            previous_run = run
            key, debtor, _ = run_debtors[run]
            if key == last:
                continue
            last = key
            values = _debtor_values(debtor)
            version_rows.append((debtor.code, lines[index], hash(values), *values))
        self.last_staged = last
        return _in_chunks(invoice_rows, version_rows)

    def _shared(self, values: pl.Series) -> list[str]:
        """A column of few distinct strings (dates, currency, kind) as one object per distinct value, as the
        reference's rows have them: a smaller frame, and one object for the parent to make per value."""
        seen = self._seen
        if len(seen) > SHARED_VALUES:
            seen.clear()
        keep = seen.setdefault
        return [keep(value, value) for value in values.to_list()]


def _in_chunks(invoice_rows: list[InvoiceRow], version_rows: list[VersionRow]) -> list[Batch]:
    """The block's rows in batches of ``CHUNK`` invoice rows, each with the version rows of its lines."""
    if len(invoice_rows) <= CHUNK:
        return [(invoice_rows, version_rows)] if invoice_rows or version_rows else []
    version_lines = [v[1] for v in version_rows]
    batches: list[Batch] = []
    taken = 0
    for start in range(0, len(invoice_rows), CHUNK):
        part = invoice_rows[start : start + CHUNK]
        upto = bisect.bisect_right(version_lines, part[-1][0])
        batches.append((part, version_rows[taken:upto]))
        taken = upto
    return batches


def _iso_day(day: pl.Expr) -> pl.Expr:
    year = day.str.slice(0, 4).cast(pl.Int32, strict=False)
    return (
        day.str.contains(_ISO_DAY)
        & year.is_between(MIN_YEAR, MAX_YEAR)
        & day.str.to_date("%Y-%m-%d", strict=False).is_not_null()
    )


def _simple_amount(amount: pl.Expr) -> pl.Expr:
    return amount.str.contains(_AMOUNT) & (~amount.str.starts_with("-") | amount.str.contains("[1-9]"))


def _cents(amount: pl.Expr) -> pl.Expr:
    """Whole cents of a simple amount ("-1234,5" -> -123450); meaningless for another text (screened out)."""
    decimal = amount.str.replace(",", ".", literal=True).cast(pl.Decimal(18, 2), strict=False)
    return decimal.to_physical().cast(pl.Int64, strict=False)


def _stripped(text: pl.Expr) -> pl.Expr:
    """``(text.strip() or None)``: the blocks read here hold no character that str.strip() removes and
    polars' strip_chars() keeps (``_REFERENCE_ONLY``)."""
    value = text.str.strip_chars()
    return pl.when(value == "").then(None).otherwise(value)
