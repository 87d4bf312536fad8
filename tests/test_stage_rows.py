"""``StageRows``: entries as stage rows, in cents. An unpaid row's open amount is the total's own ``Decimal``
(both parsers give it so: most rows are unpaid) and is converted once; the cents are those of the values,
whichever objects carry them."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.config import IgnoreSettings, KindSettings
from gateway.ignore import IgnoreLists
from gateway.records import Debtor, Entry, Invoice
from gateway.stage_rows import INVOICE_ROW_COLUMNS, StagePolicy, StageRows, to_cents
from parsers.payt_csv import CsvOptions, parse_payt_csv
from tests.test_payt_xml import VALID as VALID_XML
from tests.test_payt_xml import parse as parse_xml

POLICY = StagePolicy(KindSettings(), IgnoreLists.from_settings(IgnoreSettings()), ZoneInfo("Europe/Amsterdam"))
TOTAL, OPEN = INVOICE_ROW_COLUMNS.index("amount_total_cents"), INVOICE_ROW_COLUMNS.index("amount_open_cents")
KIND = INVOICE_ROW_COLUMNS.index("kind")


def entry(number: str, total: Decimal, open_: Decimal) -> Entry:
    debtor = Debtor("D1", company_name="Eerste BV")
    invoice = Invoice(number, "D1", date(2026, 2, 1), date(2026, 3, 1), total, open_, "EUR")
    return Entry(1, debtor, invoice)


def amounts(entries: list[Entry]) -> list[tuple[int, int, str]]:
    return [(r[TOTAL], r[OPEN], r[KIND]) for batch, _ in StageRows(POLICY, True).batches(entries) for r in batch]


def test_the_cents_are_those_of_the_values_whichever_objects_carry_them() -> None:
    same = Decimal("100.50")
    rows = amounts(
        [
            entry("A", same, same),  # unpaid: one object
            entry("B", Decimal("100.50"), Decimal("100.5")),  # unpaid: equal values, two objects
            entry("C", Decimal("100.50"), Decimal("20.25")),  # partly paid
            entry("D", Decimal("-12"), Decimal("-12.00")),  # a credit note
            entry("E", Decimal("40"), Decimal("0")),  # paid before it was loaded
        ]
    )
    assert rows == [
        (10050, 10050, "invoice"),
        (10050, 10050, "invoice"),
        (10050, 2025, "invoice"),
        (-1200, -1200, "credit_note"),
        (4000, 0, "prepaid"),
    ]


def test_an_amount_with_more_than_two_decimals_is_refused() -> None:
    with pytest.raises(ValueError, match="more than two decimals"):
        amounts([entry("A", Decimal("1.005"), Decimal("1.00"))])
    with pytest.raises(ValueError, match="more than two decimals"):
        to_cents(Decimal("0.001"))


def test_both_parsers_give_an_unpaid_invoice_the_totals_own_decimal() -> None:
    _, xml_entries = parse_xml(VALID_XML)
    csv_text = (
        "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
        "debtor_post_country_code;invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;"
        "invoice_open_amount_inc_vat\n"
        "D1;Eerste BV;Kerkstraat 1;1234 AB;Utrecht;NL;F-1;2026-02-01;2026-03-01;99.95;99.95\n"
        "D1;Eerste BV;Kerkstraat 1;1234 AB;Utrecht;NL;F-2;2026-02-01;2026-03-01;1210.00;610.00\n"
    )
    csv_entries = list(parse_payt_csv(io.BytesIO(csv_text.encode()), CsvOptions("ACME")).entries)
    for entries in (xml_entries, csv_entries):
        unpaid = [e.invoice for e in entries if e.invoice.amount_open == e.invoice.amount_total]
        paid = [e.invoice for e in entries if e.invoice.amount_open != e.invoice.amount_total]
        assert unpaid and paid
        assert all(i.amount_open is i.amount_total for i in unpaid)
        assert not any(i.amount_open is i.amount_total for i in paid)
