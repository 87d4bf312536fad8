"""Property tests of the payt-csv reader: any input gives records or a clean rejection, never a crash."""

from __future__ import annotations

import codecs
import io
import os
from datetime import date
from decimal import Decimal
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import RejectFile
from gateway.records import Entry, Severity, Snapshot
from parsers import payt_csv
from parsers.column_spec import load_spec
from parsers.csv_values import parse_amount, parse_date
from parsers.payt_csv import CsvOptions, parse_payt_csv

EXAMPLES = int(os.environ.get("PAYT_FUZZ_EXAMPLES", "150"))  # benchmarks/fuzz_readers.py: the long run
QUICK = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REQUIRED = [
    "debtor_code",
    "debtor_company_name",
    "debtor_post_street_1",
    "debtor_post_postalcode",
    "debtor_post_city",
    "invoice_number",
    "invoice_date",
    "invoice_due_date",
    "invoice_total_amount_inc_vat",
    "invoice_open_amount_inc_vat",
]
ALL_NAMES = [name for col in load_spec().columns for name in col.names]
FRAGMENTS = [
    "",
    " ",
    "10045",
    "Voorbeeld B.V.",
    "Kerkstraat 1",
    "2026-02-28",
    "28-02-2026",
    "02/28/2026",
    "31-02-2026",
    "28022026",
    "1210.00",
    "1.234,56",
    "1,234.56",
    "-12,50",
    "12,50-",
    "€ 12,50",
    "1.234",
    "12.3456",
    "abc",
    "NL",
    "nl",
    "XX",
    "EUR",
    "eur",
    "1",
    "ja",
    "info@voorbeeld.nl",
    "not@mail",
    "NL91ABNA0417164300",
    "NL123456789B01",
    "0301234567",
    "ADM01",
    "ADM02",
    '"',
    '""',
    'a"b',
    ";",
    ",",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "é€’",
    "\ufeff",
    "x" * 300,
    "sep=;",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "cp1252"]


def consume(data: bytes, **options: object) -> tuple[Snapshot, list[Entry]] | RejectFile:
    """Parse and exhaust; anything but a Snapshot or a RejectFile propagates and fails the test."""
    try:
        snapshot = parse_payt_csv(io.BytesIO(data), CsvOptions("ADM01", **options))  # type: ignore[arg-type]
        entries = list(snapshot.entries)
    except RejectFile as exc:
        assert exc.problems and all(p.severity is Severity.ERROR for p in exc.problems)
        return exc
    lines = [e.line for e in entries]
    assert lines == sorted(set(lines)) and all(line >= 2 for line in lines)
    assert snapshot.rows >= len(entries)
    errors = [p for p in snapshot.problems if p.severity is Severity.ERROR]
    assert all(p.row is not None and p.row >= 2 for p in errors)
    assert not set(lines) & {p.row for p in errors}  # a row with an error gives no entry
    for entry in entries:
        assert isinstance(entry.invoice.amount_total, Decimal) and isinstance(entry.invoice.amount_open, Decimal)
        assert entry.invoice.debtor_code == entry.debtor.code
        assert entry.invoice.due_date >= entry.invoice.invoice_date
    return snapshot, entries


@QUICK
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    consume(data)


@QUICK
@given(st.sampled_from([";", ",", "\t"]), st.binary(max_size=600))
def test_arbitrary_bytes_after_a_valid_header(sep: str, data: bytes) -> None:
    consume((sep.join(REQUIRED) + "\n").encode() + data)


def cell_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12))


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    sep = draw(st.sampled_from([";", ",", "\t"]))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    header = draw(
        st.one_of(
            st.just(REQUIRED),
            st.permutations(REQUIRED + draw(st.lists(st.sampled_from(ALL_NAMES), max_size=4))),
            st.lists(st.one_of(st.sampled_from(ALL_NAMES), cell_text()), max_size=14),
        )
    )
    width = len(header)
    rows = draw(
        st.lists(
            st.lists(cell_text(), min_size=max(width - 1, 0), max_size=width + 1),
            max_size=6,
        )
    )
    quote_properly = draw(st.booleans())

    def render(cell: str) -> str:
        if quote_properly and any(ch in cell for ch in (sep, '"', "\n", "\r")):
            return '"' + cell.replace('"', '""') + '"'
        return cell

    text = "".join(sep.join(render(c) for c in line) + eol for line in [header, *rows])
    encoding = draw(st.sampled_from(ENCODINGS))
    return text.encode(encoding, errors="replace")


@settings(max_examples=max(EXAMPLES, 300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files(), st.sampled_from(["dmy", "mdy"]))
def test_csv_like_files(data: bytes, order: str) -> None:
    consume(data, date_order=order)


# ----------------------------------------------------------------------------- the fast path is a shortcut


@st.composite
def typical_rows(draw: st.DrawFn) -> list[list[str]]:
    """Rows that are mostly valid, in the varied forms real exports use, so both paths have work."""
    rows = []
    for n in range(draw(st.integers(1, 8))):
        day = draw(st.dates(date(2020, 1, 1), date(2030, 12, 31)))
        due = draw(st.sampled_from([day, date(2031, 1, 1), date(2019, 1, 1)]))
        total = draw(st.decimals(min_value=-5000, max_value=5000, places=2, allow_nan=False, allow_infinity=False))
        open_ = draw(st.sampled_from([total, Decimal(0), total / 2, total * 2, -total]))
        rows.append(
            [
                draw(st.sampled_from(["ADM01", "", " ADM01 ", "ADM02"])),
                draw(st.sampled_from(["1", "2", " 2 ", ""])),
                draw(st.sampled_from(["Voorbeeld B.V.", "", "x" * 256])),
                "Kerkstraat 1",
                "1234 AB",
                draw(st.sampled_from(["Utrecht", "Utrecht ", ""])),
                draw(st.sampled_from(["NL", "nl", "", "XX"])),
                draw(st.sampled_from([f"F{n}", f" F{n}", "", "y" * 256])),
                draw(st.sampled_from([day.isoformat(), day.strftime("%d-%m-%Y"), "31-02-2026", ""])),
                draw(st.sampled_from([due.isoformat(), due.strftime("%d.%m.%Y")])),
                draw(st.sampled_from([str(total), str(total).replace(".", ","), f"€ {total}", "1.234", " 7 "])),
                draw(st.sampled_from([str(open_), f"{open_}".replace(".", ","), str(total)])),
                draw(st.sampled_from(["EUR", "", "usd", "EURO"])),
                draw(st.sampled_from(["", "Onderhoud", " spatie ", "z" * 256])),
                draw(st.sampled_from(["", "2026-03-01", "2026-03-01T10:00:00+01:00", "gisteren"])),
            ]
        )
    return rows


FAST_HEADER = [
    "administration_code",
    "debtor_code",
    "debtor_company_name",
    "debtor_post_street_1",
    "debtor_post_postalcode",
    "debtor_post_city",
    "debtor_post_country_code",
    "invoice_number",
    "invoice_date",
    "invoice_due_date",
    "invoice_total_amount_inc_vat",
    "invoice_open_amount_inc_vat",
    "invoice_currency_code",
    "invoice_description",
    "invoice_sent_at",
]


def outcome(data: bytes) -> tuple[object, ...]:
    snapshot = parse_payt_csv(io.BytesIO(data), CsvOptions("ADM01"))
    entries = list(snapshot.entries)
    return entries, snapshot.problems, snapshot.blocked_invoices, snapshot.blocked_debtors, snapshot.rows


@settings(max_examples=max(EXAMPLES, 200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typical_rows())
def test_fast_path_gives_what_the_generic_validation_gives(rows: list[list[str]]) -> None:
    data = "".join(";".join(line) + "\n" for line in [FAST_HEADER, *rows]).encode()
    fast = outcome(data)
    with mock.patch.object(payt_csv, "_FAST_REQUIRED", frozenset()):  # the fast path steps aside
        slow = outcome(data)
    assert fast == slow


# ---------------------------------------------------------------------------------------- line numbers


@QUICK
@given(
    st.lists(st.text(alphabet='ab;"\r\n ', max_size=12), min_size=1, max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_line_numbers_count_physical_lines(descriptions: list[str], eol: str) -> None:
    header = [*REQUIRED, "invoice_description"]
    base = ["1", "A", "Kerkstraat 1", "1234 AB", "Utrecht", "", "2026-02-28", "2026-03-30", "10.00", "10.00"]
    lines = [";".join(header) + eol]
    expected = []
    physical = 2
    for n, description in enumerate(descriptions):
        cells = [*base[:5], f"F{n}", *base[6:], '"' + description.replace('"', '""') + '"']
        record = ";".join(cells) + eol
        lines.append(record)
        expected.append(physical)
        # physical lines in the text: CRLF counts once, CR and LF each once
        physical += record.replace("\r\n", "\n").replace("\r", "\n").count("\n")
    snapshot = parse_payt_csv(io.BytesIO("".join(lines).encode()), CsvOptions("ADM01"))
    entries = list(snapshot.entries)
    assert [e.line for e in entries] == expected
    assert [e.invoice.description for e in entries] == [d.strip() or None for d in descriptions]


# ------------------------------------------------------------------------------------------ value round trips


@settings(max_examples=max(EXAMPLES, 300), deadline=None)
@given(
    st.decimals(min_value=Decimal("-999999999999.99"), max_value=Decimal("999999999999.99"), places=2),
    st.sampled_from(["plain", "comma", "nl", "en", "trailing_minus", "euro"]),
)
def test_amount_round_trip(value: Decimal, style: str) -> None:
    sign = "-" if value < 0 else ""
    integer, fraction = f"{abs(value):.2f}".split(".")
    grouped = f"{int(integer):,}"
    text = {
        "plain": f"{sign}{integer}.{fraction}",
        "comma": f"{sign}{integer},{fraction}",
        "nl": f"{sign}{grouped.replace(',', '.')},{fraction}",
        "en": f"{sign}{grouped}.{fraction}",
        "trailing_minus": f"{integer},{fraction}{sign}",
        "euro": f"{sign}€ {grouped.replace(',', '.')},{fraction}",
    }[style]
    parsed = parse_amount(text)
    assert parsed == value
    assert not (parsed == 0 and parsed.is_signed())


@settings(max_examples=max(EXAMPLES, 300), deadline=None)
@given(
    st.dates(date(1900, 1, 1), date(2199, 12, 31)),
    st.sampled_from(["dmy", "mdy"]),
    st.sampled_from(["-", "/", "."]),
    st.booleans(),
)
def test_date_round_trip(day: date, order: str, sep: str, compact: bool) -> None:
    first, second = (day.day, day.month) if order == "dmy" else (day.month, day.day)
    text = f"{first:02d}{second:02d}{day.year}" if compact else f"{first}{sep}{second:02d}{sep}{day.year}"
    assert parse_date(text, order) == day
    assert parse_date(day.isoformat(), order) == day


@QUICK
@given(st.text(min_size=1, max_size=40), st.sampled_from(ENCODINGS))
def test_any_text_cell_survives_the_encodings(name: str, encoding: str) -> None:
    header = ";".join(REQUIRED) + "\n"
    cells = [
        "1",
        '"' + name.replace('"', '""') + '"',
        "Kerkstraat 1",
        "1234 AB",
        "Utrecht",
        "F1",
        "2026-02-28",
        "2026-03-30",
        "1",
        "1",
    ]
    text = header + ";".join(cells) + "\n"
    try:
        data = (codecs.BOM_UTF8 if encoding == "utf-8-sig" else b"") + text.encode(encoding.replace("-sig", ""))
    except UnicodeEncodeError:
        return  # not representable in Windows-1252
    result = consume(data)
    if "\x00" in name:
        assert isinstance(result, RejectFile)
        return
    assert not isinstance(result, RejectFile)
    snapshot, entries = result
    if encoding == "cp1252" and snapshot.detected["encoding"] == "utf-8":
        return  # these Windows-1252 bytes happen to be valid UTF-8 too: the spec reads them as UTF-8
    assert snapshot.rows == 1
    # Windows-1252 bytes that contain a valid UTF-8 multi-byte sequence (C2 A0 = "Â\xa0") look mixed: the
    # warning is the parser's heuristic doing its job, and it never blocks.
    looks_mixed = encoding == "cp1252" and any(ord(c) > 127 for c in data.decode("utf-8", errors="ignore"))
    expected = [["mixed_encoding"], []] if looks_mixed else [[]]
    if name.strip():
        assert [p.code for p in snapshot.problems if p.severity is not Severity.NOTICE] in expected
        assert [e.debtor.company_name for e in entries] == [name.strip()]
    else:
        assert [(p.column, p.code) for p in snapshot.errors] == [("debtor_company_name", "required")]
