"""Which invoice number a document's file name names: the pure rules, table-driven."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from gateway.document_names import (
    MAX_RUNS,
    decide_document_numbers,
    decide_numbers,
    default_candidates,
    is_pdf_name,
    stem_of,
)
from gateway.records import PdfDocument, UblDocument


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("141234.pdf", "141234"),
        ("Invoice 141234.pdf", "Invoice 141234"),
        ("2026-0042.v2.PDF", "2026-0042.v2"),
        ("folder/sub/2026-0042.pdf", "2026-0042"),
        ("folder\\2026-0042.pdf", "2026-0042"),
        ("2026-0042", "2026-0042"),
        (".pdf", ".pdf"),
    ],
)
def test_stem(name: str, stem: str) -> None:
    assert stem_of(name) == stem


# (file name, invoice number, named under the default rule?)
DEFAULT_RULE = [
    ("141234.pdf", "141234", True),
    ("Invoice 141234.pdf", "141234", True),
    ("Factuur_2026-0042 (kopie).pdf", "2026-0042", True),
    ("2026-0042.pdf", "2026-0042", True),
    ("2026-0042.pdf", "0042", True),  # a candidate; the longer number wins when both are invoices
    ("2026-0042.pdf", "2026", True),
    ("INV1412345.pdf", "141234", False),  # inside a longer run of digits
    ("INV141234.pdf", "141234", False),  # letters glued to the number
    ("141234a.pdf", "141234", False),
    ("141234-A.pdf", "141234-A", True),
    ("141234-A.pdf", "141234", True),
    ("Factuur 2026-0042.pdf", "026-004", False),  # not bounded by the span's ends
    ("Factuur 2026-0042.pdf", "Factuur 2026-0042", True),
    ("factuur 2026-0042.pdf", "FACTUUR 2026-0042", False),  # exact, case-sensitive
    ("Rechnung Nr. ÄB-12.pdf", "ÄB-12", True),  # letters beyond ASCII are letters
    ("2026-0042.pdf", "2026-0042.pdf", False),  # the extension is not part of the name
    ("---.pdf", "-", False),
]


@pytest.mark.parametrize(("name", "number", "named"), DEFAULT_RULE)
def test_default_rule(name: str, number: str, named: bool) -> None:
    result = decide_numbers(name)
    assert result.number is None
    assert (number in result.candidates) is named


def test_default_candidates_are_ordered_most_specific_first() -> None:
    assert default_candidates("Factuur 2026-0042") == (
        "Factuur 2026-0042",
        "Factuur 2026",
        "2026-0042",
        "Factuur",
        "2026",
        "0042",
    )
    assert default_candidates("a_b") == ("a_b", "a", "b")  # the underscore separates
    assert default_candidates("") == ()
    assert default_candidates("-- --") == ()


def test_default_candidates_are_bounded() -> None:
    many = " ".join(f"w{i}" for i in range(100))
    candidates = default_candidates(many)
    assert len(candidates) == sum(min(MAX_RUNS, 100 - i) for i in range(100))
    assert max(len(c.split()) for c in candidates) == MAX_RUNS
    assert all(len(c) <= 255 for c in default_candidates("x" * 300 + " 1"))
    assert default_candidates("x" * 300 + " 1") == ("1",)


# (pattern, file name, number or None)
PATTERN_RULE = [
    (r"^(?P<number>\d+)_", "141234_factuur.pdf", "141234"),
    (r"^(?P<number>\d+)_", "factuur_141234.pdf", None),
    (r"F(?P<number>\d{4}-\d{4})", "Acme F2026-0042 kopie.pdf", "2026-0042"),
    (r"\d{6}", "Invoice 141234 Acme.pdf", "141234"),  # no group: the whole match
    (r"(?P<number>\d*)", "abc.pdf", None),  # an empty match names nothing
    (r"INV-(?P<number>.+)", "INV-2026-0042.pdf", "2026-0042"),  # searched in the stem, not the extension
]


@pytest.mark.parametrize(("pattern", "name", "number"), PATTERN_RULE)
def test_pattern_rule(pattern: str, name: str, number: str | None) -> None:
    result = decide_numbers(name, pattern)
    assert result.number == number
    assert result.candidates == ((number,) if number else ())


def test_ubl_names_its_invoice_by_cbc_id_whatever_the_file_name() -> None:
    ubl = UblDocument(
        kind="invoice",
        number="2026-0042",
        issue_date=date(2026, 2, 28),
        due_date=None,
        type_code="380",
        currency="EUR",
        payable_amount=Decimal("1210.00"),
        customer_name=None,
        customer_id=None,
        supplier_name=None,
    )
    named = decide_document_numbers(ubl, "9999-0001.xml", r"(?P<number>\d+)")
    assert (named.number, named.candidates) == ("2026-0042", ("2026-0042",))
    pdf = decide_document_numbers(PdfDocument("1.7", 100), "9999-0001.pdf", r"(?P<number>\d+)")
    assert (pdf.number, pdf.candidates) == ("9999", ("9999",))


@pytest.mark.parametrize(
    ("name", "claims"),
    [("a.pdf", True), ("A.PDF", True), ("a.pdf.part", False), ("a.pdfx", False), ("pdf", False)],
)
def test_pdf_name(name: str, claims: bool) -> None:
    assert is_pdf_name(name) is claims
