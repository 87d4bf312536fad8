"""The payt-csv parser: dialects, row errors and warnings, file errors, streaming behaviour."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gc
import io
import json
import tracemalloc
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import RejectFile
from gateway.records import Debtor, Entry, Invoice, Severity, Snapshot
from parsers import payt_csv
from parsers.column_spec import build_spec, load_spec, normalise_header
from parsers.payt_csv import MAX_PROBLEMS_PER_CODE, MAX_RECORD_CHARS, CsvOptions, parse_payt_csv

HEADER = [
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
VALUES = [
    "10045",
    "Voorbeeld B.V.",
    "Kerkstraat 1",
    "1234 AB",
    "Utrecht",
    "2026-0042",
    "2026-02-28",
    "2026-03-30",
    "1210.00",
    "610.00",
]


def quote(cell: str, sep: str) -> str:
    if any(ch in cell for ch in (sep, '"', "\n", "\r")):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def csv_text(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER, sep: str = ";", eol: str = "\n") -> str:
    return "".join(sep.join(quote(c, sep) for c in line) + eol for line in [header, *rows])


def row(**changes: str) -> list[str]:
    """VALUES with some cells changed, by canonical column name."""
    cells = list(VALUES)
    for name, value in changes.items():
        cells[HEADER.index(name)] = value
    return cells


def parse(data: str | bytes, **options: Any) -> tuple[Snapshot, list[Entry]]:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    snapshot = parse_payt_csv(io.BytesIO(raw), CsvOptions(**{"administration_code": "ADM01", **options}))
    entries = list(snapshot.entries)
    return snapshot, entries


def problems(snapshot: Snapshot, severity: Severity | None = None) -> list[tuple[int | None, str | None, str]]:
    return [(p.row, p.column, p.code) for p in snapshot.problems if severity is None or p.severity is severity]


def rejected(data: str | bytes, **options: Any) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(RejectFile) as info:
        parse(data, **options)
    assert all(p.severity is Severity.ERROR for p in info.value.problems)
    return [(p.row, p.column, p.code) for p in info.value.problems]


# ---------------------------------------------------------------------------------------------- dialects


def test_a_plain_file() -> None:
    snapshot, entries = parse(csv_text([VALUES]))
    assert snapshot.detected == {"encoding": "utf-8", "delimiter": ";", "date_order": "dmy"}
    assert snapshot.rows == 1
    assert snapshot.problems == []
    assert snapshot.administration_code == "ADM01"
    [entry] = entries
    assert entry.line == 2
    assert entry.debtor == Debtor(
        code="10045",
        company_name="Voorbeeld B.V.",
        street_1="Kerkstraat 1",
        postal_code="1234 AB",
        city="Utrecht",
        country_code="NL",
    )
    assert entry.invoice == Invoice(
        number="2026-0042",
        debtor_code="10045",
        invoice_date=date(2026, 2, 28),
        due_date=date(2026, 3, 30),
        amount_total=Decimal("1210.00"),
        amount_open=Decimal("610.00"),
        currency="EUR",
    )


NAME = "Café Ærø € ‘quoted’"


@pytest.mark.parametrize(
    ("encoding", "data_encoding", "prefix"),
    [
        ("utf-8", "utf-8", b""),
        ("utf-8-sig", "utf-8", codecs.BOM_UTF8),
        ("utf-16", "utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16", "utf-16-be", codecs.BOM_UTF16_BE),
        ("cp1252", "cp1252", b""),
    ],
)
def test_encodings(encoding: str, data_encoding: str, prefix: bytes) -> None:
    text = csv_text([row(debtor_company_name=NAME, invoice_total_amount_inc_vat="€ 1.210,00")])
    snapshot, [entry] = parse(prefix + text.encode(data_encoding))
    assert snapshot.detected["encoding"] == encoding
    assert entry.debtor.company_name == NAME
    assert entry.debtor.code == "10045"  # the BOM is not part of the first header name
    assert entry.invoice.amount_total == Decimal("1210.00")
    codes = [p.code for p in snapshot.problems]
    assert codes == (["encoding_windows_1252"] if encoding == "cp1252" else [])


def test_mixed_encodings_are_read_as_windows_1252_with_a_warning() -> None:
    second = ";".join(row(debtor_company_name="Café", invoice_number="2")) + "\n"
    data = csv_text([row(debtor_company_name="Café")]).encode("utf-8") + second.encode("cp1252")
    snapshot, entries = parse(data)
    assert snapshot.detected["encoding"] == "cp1252"
    assert [e.debtor.company_name for e in entries] == ["CafÃ©", "Café"]
    assert [(p.severity, p.code) for p in snapshot.problems] == [
        (Severity.NOTICE, "encoding_windows_1252"),
        (Severity.WARNING, "mixed_encoding"),
    ]


@pytest.mark.parametrize(("sep", "name"), [(";", ";"), (",", ","), ("\t", "\t")])
@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_separators_and_line_ends(sep: str, name: str, eol: str) -> None:
    rows = [
        row(invoice_number=str(n), debtor_company_name=f"A{sep}B", invoice_total_amount_inc_vat="1210,00")
        for n in range(3)
    ]
    snapshot, entries = parse(csv_text(rows, sep=sep, eol=eol))
    assert snapshot.detected["delimiter"] == name
    assert [e.line for e in entries] == [2, 3, 4]
    assert [e.invoice.number for e in entries] == ["0", "1", "2"]
    assert {e.debtor.company_name for e in entries} == {f"A{sep}B"}
    assert {e.invoice.amount_total for e in entries} == {Decimal("1210.00")}


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_quoting_and_line_numbers_after_multiline_fields(eol: str) -> None:
    description = f'Onderhoud{eol}februari; "extra"{eol}{eol}einde'
    header = [*HEADER, "invoice_description"]
    rows = [
        [*row(invoice_number="A"), description],
        [*row(invoice_number="B"), 'one "quoted" word'],
        [*row(invoice_number="C", debtor_post_city=""), "x"],
    ]
    snapshot, entries = parse(csv_text(rows, header=header, eol=eol))
    assert [(e.line, e.invoice.number) for e in entries] == [(2, "A"), (6, "B")]
    assert entries[0].invoice.description == description
    assert entries[1].invoice.description == 'one "quoted" word'
    assert problems(snapshot) == [(7, "debtor_post_city", "required")]


def test_quoted_header_and_excel_separator_line_and_leading_blank_lines() -> None:
    header = ",".join(f'"{h}"' if n < 2 else h for n, h in enumerate(HEADER))
    text = f"\n\nsep=,\n{header}\n"
    text += ",".join(quote(c, ",") for c in row(invoice_total_amount_inc_vat="1.210,00")) + "\n"
    snapshot, [entry] = parse(text)
    assert snapshot.detected["delimiter"] == ","
    assert entry.line == 5
    assert entry.invoice.amount_total == Decimal("1210.00")


def test_blank_lines_and_trailing_separators_are_tolerated() -> None:
    text = (
        ";".join(HEADER)
        + ";\n"
        + ";".join(VALUES)
        + ";\n\n;;;;;;;;;;\n   \n"
        + ";".join(row(invoice_number="2"))
        + "\n"
    )
    snapshot, entries = parse(text)
    assert [(e.line, e.invoice.number) for e in entries] == [(2, "2026-0042"), (6, "2")]
    assert snapshot.rows == 2
    assert snapshot.problems == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.56", "1234.56"),
        ("1234,56", "1234.56"),
        ("1.234,56", "1234.56"),
        ("1,234.56", "1234.56"),
        ("-12,50", "-12.50"),
        ("12,50-", "-12.50"),
        ("€ 12,50", "12.50"),
        ("EUR 12,50", "12.50"),
        (" 7 ", "7"),
    ],
)
def test_amount_forms_in_a_file(text: str, expected: str) -> None:
    _, [entry] = parse(csv_text([row(invoice_total_amount_inc_vat=text, invoice_open_amount_inc_vat=text)]))
    assert entry.invoice.amount_total == Decimal(expected)
    assert entry.invoice.amount_open == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("2026-02-08", "dmy", date(2026, 2, 8)),
        ("08-02-2026", "dmy", date(2026, 2, 8)),
        ("08/02/2026", "dmy", date(2026, 2, 8)),
        ("8-2-2026", "dmy", date(2026, 2, 8)),
        ("08.02.2026", "dmy", date(2026, 2, 8)),
        ("08022026", "dmy", date(2026, 2, 8)),
        ("02-08-2026", "mdy", date(2026, 2, 8)),
        ("02/08/2026", "mdy", date(2026, 2, 8)),
        ("02082026", "mdy", date(2026, 2, 8)),
    ],
)
def test_date_forms_in_a_file(text: str, order: str, expected: date) -> None:
    snapshot, [entry] = parse(csv_text([row(invoice_date=text, invoice_due_date=text)]), date_order=order)
    assert snapshot.detected["date_order"] == order
    assert entry.invoice.invoice_date == expected
    assert entry.invoice.due_date == expected


@pytest.mark.parametrize(
    "header",
    [
        [
            "debiteurnummer",
            "naam",
            "adres",
            "postcode",
            "plaats",
            "factuurnummer",
            "factuurdatum",
            "vervaldatum",
            "factuurbedrag",
            "openstaand",
        ],
        [
            "debtor_number",
            "company_name",
            "street",
            "zip",
            "city",
            "invoice_id",
            "issue_date",
            "due_date",
            "amount",
            "balance",
        ],
        [
            "customer_number",
            "customer_name",
            "address_line_1",
            "postal_code",
            "city",
            "document_number",
            "date",
            "due_date",
            "total",
            "amount_due",
        ],
        [
            "  Deb. Nr ",
            "BEDRIJFSNAAM",
            "Straat",
            "Postal-Code",
            " WOONPLAATS",
            "Factuurnr.",
            "Datum",
            "Vervalt",
            "Bedrag",
            "Saldo",
        ],
        [
            "\ufeffKlantnummer",
            "RelatieNaam",
            "Address Line 1",
            "ZIP",
            "Plaats",
            "Boekstuk",
            "Factuurdatum",
            "Due-Date",
            "Amount Total",
            "Open Amount",
        ],
    ],
)
def test_header_aliases(header: list[str]) -> None:
    snapshot, [entry] = parse(csv_text([VALUES], header=header))
    assert snapshot.problems == []
    assert entry.invoice.number == "2026-0042"
    assert entry.debtor.city == "Utrecht"
    assert entry.invoice.amount_open == Decimal("610.00")


def test_all_columns() -> None:
    cells = {
        "administratiecode": "ADM01",
        "debiteurnummer": " 10045 ",
        "naam": "Voorbeeld B.V.",
        "zakelijk": "1",
        "voornaam": "Jan",
        "tussenvoegsel": "de",
        "achternaam": "Vries",
        "e-mail": "info@voorbeeld.nl",
        "factuur e-mail": "facturen@voorbeeld.nl",
        "herinnering e-mail": "",
        "telefoon": "030-1234567",
        "mobiel": "06 12345678",
        "adres": "Kerkstraat 1",
        "adres 2": "",
        "postcode": "1234 AB",
        "plaats": "Utrecht",
        "land": "be",
        "taal": "NL",
        "btw nummer": "NL123456789B01",
        "kvk nummer": "12345678",
        "iban": "nl91 abna 0417 1643 00",
        "factuurnummer": "2026-0042",
        "factuurdatum": "28-02-2026",
        "vervaldatum": "30-03-2026",
        "factuurbedrag": "-1.210,00",
        "openstaand": "-610,00",
        "valuta": "usd",
        "omschrijving": "Onderhoud",
        "betalingsconditie": "30 dagen",
        "betalingskenmerk": "1234 5678 9012 3456",
        "ordernummer": "PO-1",
        "verzonden op": "2026-03-01 10:15",
        "pdf": "2026-0042.pdf",
        "onbekend": "x",
        "nog een": "y",
    }
    snapshot, [entry] = parse(csv_text([list(cells.values())], header=list(cells)))
    assert [(p.severity, p.code, p.row) for p in snapshot.problems] == [(Severity.NOTICE, "unknown_columns", 1)]
    assert "'onbekend', 'nog een'" in snapshot.problems[0].message
    assert entry.debtor == Debtor(
        code="10045",
        company_name="Voorbeeld B.V.",
        is_company=True,
        firstname="Jan",
        infix="de",
        lastname="Vries",
        email="info@voorbeeld.nl",
        invoice_email="facturen@voorbeeld.nl",
        reminder_email=None,
        phone="030-1234567",
        mobile="06 12345678",
        street_1="Kerkstraat 1",
        street_2=None,
        postal_code="1234 AB",
        city="Utrecht",
        country_code="BE",
        language_code="nl",
        vat_number="NL123456789B01",
        coc_number="12345678",
        iban="NL91ABNA0417164300",
    )
    assert entry.invoice == Invoice(
        number="2026-0042",
        debtor_code="10045",
        invoice_date=date(2026, 2, 28),
        due_date=date(2026, 3, 30),
        amount_total=Decimal("-1210.00"),
        amount_open=Decimal("-610.00"),
        currency="USD",
        description="Onderhoud",
        payment_condition="30 dagen",
        payment_reference="1234 5678 9012 3456",
        order_number="PO-1",
        sent_at=datetime(2026, 3, 1, 10, 15),
        document_filename="2026-0042.pdf",
    )


def test_defaults_for_country_and_currency() -> None:
    header = [*HEADER, "debtor_post_country_code", "invoice_currency_code"]
    _, [entry] = parse(csv_text([[*VALUES, "", ""]], header=header), default_currency="GBP", default_country="DE")
    assert (entry.debtor.country_code, entry.invoice.currency) == ("DE", "GBP")
    _, [entry] = parse(csv_text([VALUES]), default_currency="GBP", default_country="DE")
    assert (entry.debtor.country_code, entry.invoice.currency) == ("DE", "GBP")


def test_whitespace_is_trimmed_and_empty_is_none() -> None:
    header = [*HEADER, "invoice_description", "debtor_firstname"]
    padded = [f"  {c}\t" for c in VALUES]
    _, [entry] = parse(csv_text([[*padded, "   ", ""]], header=header))
    assert entry.debtor.code == "10045"
    assert entry.debtor.city == "Utrecht"
    assert entry.invoice.number == "2026-0042"
    assert entry.invoice.amount_total == Decimal("1210.00")
    assert entry.invoice.description is None
    assert entry.debtor.firstname is None


def test_a_credit_note_and_a_paid_invoice_are_valid() -> None:
    rows = [
        row(invoice_number="1", invoice_total_amount_inc_vat="-50.00", invoice_open_amount_inc_vat="-50.00"),
        row(invoice_number="2", invoice_open_amount_inc_vat="0"),
        row(invoice_number="3", invoice_total_amount_inc_vat="0", invoice_open_amount_inc_vat="0"),
    ]
    snapshot, entries = parse(csv_text(rows))
    assert snapshot.problems == []
    assert [e.invoice.amount_open for e in entries] == [Decimal("-50.00"), Decimal("0"), Decimal("0")]


# ------------------------------------------------------------------------------------------- row rules

EXTRA = [
    "administration_code",
    "debtor_post_country_code",
    "invoice_currency_code",
    "debtor_email",
    "debtor_is_company",
    "invoice_description",
    "invoice_sent_at",
    "debtor_lastname",
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"debtor_post_city": ""}, [("debtor_post_city", "required")]),
        ({"debtor_post_city": "   "}, [("debtor_post_city", "required")]),
        ({"debtor_code": ""}, [("debtor_code", "required")]),
        ({"invoice_number": ""}, [("invoice_number", "required")]),
        (
            {"debtor_post_street_1": "", "debtor_post_postalcode": ""},
            [("debtor_post_street_1", "required"), ("debtor_post_postalcode", "required")],
        ),
        ({"debtor_company_name": ""}, [("debtor_company_name", "required")]),
        ({"invoice_date": "31-02-2026"}, [("invoice_date", "invalid_date")]),
        ({"invoice_date": ""}, [("invoice_date", "required")]),
        ({"invoice_due_date": "2026-02-27"}, [("invoice_due_date", "due_before_invoice_date")]),
        ({"invoice_total_amount_inc_vat": "12,3,4"}, [("invoice_total_amount_inc_vat", "invalid_amount")]),
        ({"invoice_total_amount_inc_vat": "1.234"}, [("invoice_total_amount_inc_vat", "invalid_amount")]),
        ({"invoice_open_amount_inc_vat": "12.345"}, [("invoice_open_amount_inc_vat", "invalid_amount")]),
        ({"invoice_open_amount_inc_vat": "12.3456"}, [("invoice_open_amount_inc_vat", "amount_precision")]),
        ({"debtor_post_country_code": "Nederland"}, [("debtor_post_country_code", "invalid_country")]),
        ({"invoice_currency_code": "EURO"}, [("invoice_currency_code", "invalid_currency")]),
        ({"debtor_email": "info.voorbeeld.nl"}, [("debtor_email", "invalid_email")]),
        ({"debtor_is_company": "misschien"}, [("debtor_is_company", "invalid_bool")]),
        ({"invoice_description": "x" * 256}, [("invoice_description", "too_long")]),
        ({"debtor_post_city": "x" * 256}, [("debtor_post_city", "too_long")]),
        ({"invoice_number": "x" * 256}, [("invoice_number", "too_long")]),
        ({"administration_code": "ADM02"}, [("administration_code", "wrong_administration")]),
        ({"invoice_sent_at": "gisteren"}, [("invoice_sent_at", "invalid_date")]),
        (
            {"invoice_date": "2026-02-30", "invoice_total_amount_inc_vat": "x", "debtor_post_city": ""},
            [
                ("debtor_post_city", "required"),
                ("invoice_date", "invalid_date"),
                ("invoice_total_amount_inc_vat", "invalid_amount"),
            ],
        ),
    ],
)
def test_row_errors(changes: dict[str, str], expected: list[tuple[str, str]]) -> None:
    header = [*HEADER, *EXTRA]
    base = {**dict(zip(HEADER, VALUES, strict=True)), **dict.fromkeys(EXTRA, "")}
    good = dict(base, invoice_number="OK-1")
    bad = dict(base, **changes)
    rows = [list(good.values()), list(bad.values()), list(dict(good, invoice_number="OK-2").values())]
    snapshot, entries = parse(csv_text(rows, header=header))
    assert [e.line for e in entries] == [2, 4]
    assert problems(snapshot) == [(3, column, code) for column, code in expected]
    assert all(p.severity is Severity.ERROR for p in snapshot.problems)
    assert snapshot.rows == 3
    number = bad["invoice_number"].strip()
    assert snapshot.blocked_invoices == ({number} if number else set())
    code = bad["debtor_code"].strip()
    assert snapshot.blocked_debtors == ({code} if code else set())


def test_payt_flavoured_messages() -> None:
    header = [*HEADER, "debtor_post_country_code"]
    snapshot, _ = parse(
        csv_text([[*row(debtor_post_city="", invoice_due_date="2026-01-01"), "Holland"]], header=header)
    )
    assert [p.message for p in snapshot.problems] == [
        "City can't be blank",
        "Country 'Holland' must be an ISO alpha-2 code",
        "Due date before invoice date",
    ]


def test_lastname_instead_of_company_name() -> None:
    header = [*HEADER, "debtor_lastname"]
    snapshot, entries = parse(
        csv_text(
            [[*row(debtor_company_name=""), "Jansen"], [*row(debtor_company_name="", invoice_number="2"), ""]],
            header=header,
        )
    )
    assert [e.debtor.lastname for e in entries] == ["Jansen"]
    assert problems(snapshot) == [(3, "debtor_company_name", "required")]
    assert snapshot.problems[0].message == "Company name or last name can't be blank"


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("debtor_iban", "NL91ABNA0417164301", "invalid_iban"),
        ("debtor_vat_number", "NL12345", "invalid_vat_number"),
        ("debtor_phone", "12", "suspicious_phone"),
        ("debtor_mobile", "bel maar", "suspicious_phone"),
        ("debtor_language_code", "Nederlands", "invalid_language"),
    ],
)
def test_debtor_warnings_never_block(column: str, value: str, code: str) -> None:
    rows = [[*row(invoice_number=str(n)), value] for n in range(3)]
    snapshot, entries = parse(csv_text(rows, header=[*HEADER, column]))
    assert len(entries) == 3
    assert problems(snapshot) == [(line, column, code) for line in (2, 3, 4)]  # on every row of the debtor
    assert all(p.severity is Severity.WARNING for p in snapshot.problems)
    assert snapshot.blocked_invoices == set() and snapshot.blocked_debtors == set()
    field = load_spec().by_name[column].field
    assert field is not None
    assert getattr(entries[0].debtor, field) == (None if code == "invalid_language" else value)


@pytest.mark.parametrize(
    ("total", "open_", "warned"),
    [
        ("100.00", "100.00", False),
        ("100.00", "0", False),
        ("100.00", "100.01", True),
        ("100.00", "-1.00", True),
        ("-100.00", "-50.00", False),
        ("-100.00", "-100.01", True),
        ("-100.00", "50.00", True),
        ("0", "0", False),
        ("0", "5,00", True),
    ],
)
def test_open_exceeds_total_is_a_warning(total: str, open_: str, warned: bool) -> None:
    snapshot, entries = parse(csv_text([row(invoice_total_amount_inc_vat=total, invoice_open_amount_inc_vat=open_)]))
    assert len(entries) == 1
    expected = [(2, "invoice_open_amount_inc_vat", "open_exceeds_total")] if warned else []
    assert problems(snapshot, Severity.WARNING) == expected


def test_field_count_mismatch_is_a_row_error() -> None:
    text = (
        csv_text([VALUES])
        + ";".join(row(invoice_number="2")[:-1])
        + "\n"
        + ";".join([*row(invoice_number="3"), "extra"])
        + "\n"
    )
    snapshot, entries = parse(text)
    assert [e.line for e in entries] == [2]
    assert problems(snapshot) == [(3, None, "field_count"), (4, None, "field_count")]
    assert snapshot.blocked_invoices == {"2", "3"}
    assert snapshot.rows == 3


def test_an_unquoted_decimal_comma_in_a_comma_file_shifts_the_columns_and_is_caught() -> None:
    text = ",".join(HEADER) + "\n" + ",".join(row(invoice_total_amount_inc_vat="1210,00")) + "\n"
    snapshot, entries = parse(text)
    assert entries == []
    assert problems(snapshot) == [(2, None, "field_count")]


def test_problems_per_code_are_capped_and_counted() -> None:
    rows = [row(invoice_number=str(n), debtor_post_city="") for n in range(MAX_PROBLEMS_PER_CODE + 5)]
    snapshot, entries = parse(csv_text(rows))
    assert entries == []
    assert len(snapshot.errors) == MAX_PROBLEMS_PER_CODE
    assert snapshot.problems[-1].code == "problems_truncated"
    assert (
        f"5 more 'required' problems are not listed ({MAX_PROBLEMS_PER_CODE + 5} in total)"
        in snapshot.problems[-1].message
    )
    assert len(snapshot.blocked_invoices) == MAX_PROBLEMS_PER_CODE + 5  # blocking is never capped
    assert snapshot.rows == MAX_PROBLEMS_PER_CODE + 5


# ----------------------------------------------------------------------------------------- file errors


def test_empty_files() -> None:
    assert rejected(b"") == [(None, None, "empty_file")]
    assert rejected(b"\n\r\n   \n") == [(None, None, "empty_file")]
    assert rejected(codecs.BOM_UTF8) == [(None, None, "empty_file")]


def test_a_header_without_rows_is_an_empty_snapshot() -> None:
    snapshot, entries = parse(csv_text([]))
    assert entries == [] and snapshot.rows == 0 and snapshot.problems == []


def test_missing_required_column_names_its_aliases() -> None:
    header = [h for h in HEADER if h != "debtor_post_city"]
    with pytest.raises(RejectFile) as info:
        parse(csv_text([[v for h, v in zip(HEADER, VALUES, strict=True) if h != "debtor_post_city"]], header=header))
    [problem] = info.value.problems
    assert (problem.row, problem.column, problem.code) == (None, "debtor_post_city", "missing_column")
    assert "debtor_post_city" in problem.message
    assert "plaats, woonplaats, city" in problem.message


def test_missing_name_columns() -> None:
    header = [h for h in HEADER if h != "debtor_company_name"]
    errors = rejected(csv_text([], header=header))
    assert errors == [(None, "debtor_company_name", "missing_column")]


def test_missing_country_column_without_a_default() -> None:
    assert rejected(csv_text([VALUES]), default_country=None) == [(None, "debtor_post_country_code", "missing_column")]
    header = [*HEADER, "land"]
    snapshot, entries = parse(csv_text([[*VALUES, ""]], header=header), default_country=None)
    assert entries == [] and problems(snapshot) == [(2, "debtor_post_country_code", "required")]


def test_every_header_problem_is_reported_at_once() -> None:
    header = ["plaats", "city", *[h for h in HEADER if h not in ("debtor_post_city", "invoice_number")]]
    assert rejected(csv_text([], header=header)) == [
        (None, "debtor_post_city", "duplicate_column"),
        (None, "invoice_number", "missing_column"),
    ]


def test_header_errors_raise_before_returning() -> None:
    with pytest.raises(RejectFile):
        parse_payt_csv(io.BytesIO(b"just;some;columns\n1;2;3\n"), CsvOptions("ADM01"))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"debtor_code;x\n\x81\x8d\n", "not_decodable"),  # invalid UTF-8, and undefined in Windows-1252
        (codecs.BOM_UTF8 + b"debtor_code\n\xff\n", "not_decodable"),
        (codecs.BOM_UTF16_LE + "debtor_code\n".encode("utf-16-le") + b"\x00", "not_decodable"),  # odd length
        (codecs.BOM_UTF16_LE + b"\x00\xd8a\x00", "not_decodable"),  # a lone surrogate
    ],
)
def test_undecodable_files(data: bytes, code: str) -> None:
    assert [c for _, _, c in rejected(data)] == [code]


def test_nul_bytes_are_a_file_error_that_names_the_line() -> None:
    data = csv_text([VALUES, row(debtor_company_name="A\x00B")]).encode()
    with pytest.raises(RejectFile) as info:
        parse(data)
    assert [(p.row, p.code, p.message) for p in info.value.problems] == [
        (None, "nul_byte", "line 3 contains a NUL byte: not a text file")
    ]
    data = codecs.BOM_UTF16_LE + csv_text([VALUES, VALUES, row(debtor_company_name="A\x00B")]).encode("utf-16-le")
    with pytest.raises(RejectFile) as info:
        parse(data)
    assert info.value.problems[0].message.startswith("line 4 ")


def test_mid_stream_csv_errors_are_raised_from_the_iterator() -> None:
    good = csv_text([VALUES, VALUES])
    snapshot = parse_payt_csv(io.BytesIO((good + '1;"unclosed;2\n3;4\n').encode()), CsvOptions("ADM01"))
    iterator = iter(snapshot.entries)
    assert next(iterator).line == 2
    assert next(iterator).line == 3
    with pytest.raises(RejectFile) as info:
        next(iterator)
    assert [(p.row, p.code) for p in info.value.problems] == [(None, "malformed_csv")]
    assert "line 4" in info.value.problems[0].message
    assert rejected(good + '1;"ab"cd;3\n') == [(None, None, "malformed_csv")]


def test_a_field_over_the_csv_field_limit_is_a_file_error() -> None:
    big = '"' + "x" * 200_000 + '"'
    assert rejected(csv_text([VALUES]) + ";".join([*VALUES[:-1], big]) + "\n") == [(None, None, "field_too_large")]


def test_an_unquoted_long_field_is_a_row_error() -> None:
    snapshot, entries = parse(csv_text([row(debtor_company_name="x" * 200_000)]))
    assert entries == [] and problems(snapshot) == [(2, "debtor_company_name", "too_long")]


def test_a_huge_line_is_rejected_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    size = 40 * MAX_RECORD_CHARS
    with path.open("wb") as f:
        f.write(csv_text([VALUES]).encode())
        chunk = b"x" * (1 << 20)
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(b"\n")
    tracemalloc.start()
    try:
        with path.open("rb") as f, pytest.raises(RejectFile) as info:
            list(parse_payt_csv(f, CsvOptions("ADM01")).entries)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(p.row, p.code) for p in info.value.problems] == [(None, "record_too_long")]
    assert "line 3" in info.value.problems[0].message
    assert peak < 16 * MAX_RECORD_CHARS, peak  # a small multiple of the record limit, not the 40 MiB line


def test_an_unclosed_quote_on_a_huge_file_is_rejected_at_the_record_limit() -> None:
    lines = "".join(f"{n};x\n" for n in range(MAX_RECORD_CHARS // 4))
    data = csv_text([VALUES]) + '1;"unclosed\n' + lines
    assert rejected(data) == [(None, None, "field_too_large")]  # the csv module's own field limit comes first
    previous = csv.field_size_limit(100 * MAX_RECORD_CHARS)
    try:
        assert rejected(data) == [(None, None, "record_too_long")]  # ours holds when that one is raised
    finally:
        csv.field_size_limit(previous)


# ---------------------------------------------------------------------------------------- streaming


def test_entries_are_lazy_and_the_counts_follow_the_iterator() -> None:
    rows = [row(invoice_number="1"), row(invoice_number="2", debtor_post_city=""), row(invoice_number="3")]
    snapshot = parse_payt_csv(io.BytesIO(csv_text(rows).encode()), CsvOptions("ADM01"))
    assert snapshot.rows == 0 and snapshot.problems == []
    iterator = iter(snapshot.entries)
    assert next(iterator).invoice.number == "1"
    assert snapshot.rows == 1
    assert next(iterator).invoice.number == "3"
    assert snapshot.rows == 3 and snapshot.blocked_invoices == {"2"}
    assert list(iterator) == []


def test_the_callers_stream_stays_open() -> None:
    source = io.BytesIO(csv_text([VALUES]).encode())
    snapshot = parse_payt_csv(source, CsvOptions("ADM01"))
    assert len(list(snapshot.entries)) == 1
    assert not source.closed
    source.seek(0)
    snapshot = parse_payt_csv(source, CsvOptions("ADM01"))
    del snapshot  # never iterated
    gc.collect()
    assert not source.closed
    source.seek(0)
    with pytest.raises(RejectFile):
        parse_payt_csv(io.BytesIO(b""), CsvOptions("ADM01"))
    assert not source.closed


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.data.read(min(len(buffer), 7))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_an_unseekable_stream_is_spooled() -> None:
    stream = io.BufferedReader(Unseekable(csv_text([VALUES, row(invoice_number="2")]).encode("cp1252")))
    assert not stream.seekable()
    snapshot = parse_payt_csv(stream, CsvOptions("ADM01"))  # type: ignore[arg-type]
    assert [e.invoice.number for e in snapshot.entries] == ["2026-0042", "2"]


def test_debtors_are_validated_once_and_shared_but_differences_are_kept() -> None:
    rows = [
        row(invoice_number="1"),
        row(invoice_number="2"),
        row(invoice_number="3", debtor_code="999"),
        row(invoice_number="4"),
        row(invoice_number="5", debtor_post_city="Amsterdam"),
    ]
    _, entries = parse(csv_text(rows))
    debtors = [e.debtor for e in entries]
    assert debtors[0] is debtors[1] is debtors[3]
    assert debtors[2].code == "999"
    assert debtors[4] is not debtors[0] and debtors[4].city == "Amsterdam"  # the conflict stays visible


def test_the_debtor_cache_steps_aside_when_debtor_rows_are_consecutive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payt_csv, "CACHE_PROBE", 8)
    alternating = [row(invoice_number=str(n), debtor_code=str(n % 2)) for n in range(40)]
    _, entries = parse(csv_text(alternating))
    assert entries[0].debtor is entries[38].debtor  # the cache serves most debtor changes: kept
    consecutive = [row(invoice_number=str(n), debtor_code=str(n // 2)) for n in range(40)]
    consecutive.append(row(invoice_number="again", debtor_code="0"))
    _, entries = parse(csv_text(consecutive))
    assert entries[0].debtor is entries[1].debtor  # the previous row is always reused
    assert entries[-1].debtor == entries[0].debtor
    assert entries[-1].debtor is not entries[0].debtor  # validated anew: the cache was dropped


def test_records_are_plain_records() -> None:
    _, [entry] = parse(csv_text([VALUES]))
    for record, cls in ((entry, Entry), (entry.invoice, Invoice), (entry.debtor, Debtor)):
        assert type(record) is cls
        copy = cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        assert record == copy


def test_options_are_validated() -> None:
    for bad in ({"date_order": "ymd"}, {"default_currency": "EURO"}, {"default_country": "Holland"}):
        with pytest.raises(ValueError):
            CsvOptions("ADM01", **bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- the spec


def test_spec_matches_formats_table() -> None:
    spec = load_spec()
    assert len(spec.columns) == 33
    assert spec.match(" Deb. Nr ") == "debtor_code"
    assert spec.match("E-Mail") == "debtor_email"
    assert spec.match("factuur e-mail") == "debtor_invoice_email"
    assert spec.match("onbekend") is None
    assert normalise_header("  Adres-2 ") == "adres_2"
    required = {c.name for c in spec.columns if c.required}
    assert required == {
        "debtor_code",
        "debtor_post_street_1",
        "debtor_post_postalcode",
        "debtor_post_city",
        "debtor_post_country_code",
        "invoice_number",
        "invoice_date",
        "invoice_due_date",
        "invoice_total_amount_inc_vat",
        "invoice_open_amount_inc_vat",
    }
    assert {c.max_length for c in spec.columns} == {255}


def test_an_alias_is_data_only(monkeypatch: pytest.MonkeyPatch) -> None:
    document = json.loads(files("schemas").joinpath("payt-csv.columns.json").read_text(encoding="utf-8"))
    for column in document["columns"]:
        if column["name"] == "debtor_post_city":
            column["aliases"]["nl"].append("stad")
    header = ["stad" if h == "debtor_post_city" else h for h in HEADER]
    assert rejected(csv_text([VALUES], header=header)) == [(None, "debtor_post_city", "missing_column")]
    monkeypatch.setattr(payt_csv, "load_spec", lambda: build_spec(document))
    _, [entry] = parse(csv_text([VALUES], header=header))
    assert entry.debtor.city == "Utrecht"


def test_spec_errors() -> None:
    document = {
        "columns": [
            {"name": "a", "type": "text", "required": False, "aliases": {"nl": ["x"]}},
            {"name": "b", "type": "text", "required": False, "aliases": {"en": ["X"]}},
        ]
    }
    with pytest.raises(ValueError, match="maps to both"):
        build_spec(document)
    with pytest.raises(ValueError, match="unknown type"):
        build_spec({"columns": [{"name": "a", "type": "money", "required": False}]})
    with pytest.raises(ValueError, match="not a canonical record field"):
        build_spec(
            {"columns": [{"name": "a", "type": "text", "required": False, "record": "debtor", "field": "shoe_size"}]}
        )
