"""Table-driven tests of the payt-csv value parsers (parsers/csv_values.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from parsers.csv_values import (
    InvalidValue,
    is_plausible_phone,
    is_plausible_vat_number,
    is_valid_iban,
    normalise_iban,
    parse_amount,
    parse_bool,
    parse_country,
    parse_currency,
    parse_date,
    parse_date_or_datetime,
    parse_email,
    parse_language,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.56", "1234.56"),
        ("1234,56", "1234.56"),
        ("1.234,56", "1234.56"),
        ("1,234.56", "1234.56"),
        ("1.234.567,89", "1234567.89"),
        ("1,234,567.89", "1234567.89"),
        ("1.234.567", "1234567"),
        ("-12,50", "-12.50"),
        ("12,50-", "-12.50"),
        ("€ 12,50", "12.50"),
        ("€12,50", "12.50"),
        ("12,50 €", "12.50"),
        ("EUR 12,50", "12.50"),
        ("eur 1.210,00", "1210.00"),
        ("-€ 12,50", "-12.50"),
        ("€ -12,50", "-12.50"),
        ("€\xa012,50", "12.50"),
        ("  1210.00 ", "1210.00"),
        ("+7", "7"),
        ("0", "0"),
        ("-0,00", "0.00"),
        ("12.5", "12.5"),
        ("1234.500", "1234.50"),  # a four-digit head cannot be a thousands group: a decimal mark
        ("1234.5000", "1234.50"),
        ("0,120", "0.12"),
        ("007", "7"),
        ("999999999999999.99", "999999999999999.99"),
    ],
)
def test_amount_forms(text: str, expected: str) -> None:
    value = parse_amount(text)
    assert value == Decimal(expected)
    assert isinstance(value, Decimal)
    assert not value.is_signed() or value < 0  # never a negative zero


def test_negative_zero_is_plain_zero() -> None:
    for text in ("-0", "-0.00", "0,00-", "-€ 0,00"):
        assert not parse_amount(text).is_signed(), text


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "invalid_amount"),
        ("abc", "invalid_amount"),
        ("12,3,4", "invalid_amount"),
        ("1.234", "invalid_amount"),  # thousands separator or three decimals: not guessed
        ("1,234", "invalid_amount"),
        ("-1.234", "invalid_amount"),
        ("12.500", "invalid_amount"),
        ("1,23.45", "invalid_amount"),
        ("1.2345,6", "invalid_amount"),
        ("12.", "invalid_amount"),
        (".5", "invalid_amount"),
        ("--12", "invalid_amount"),
        ("-12-", "invalid_amount"),
        ("€ 12 €", "invalid_amount"),
        ("1e5", "invalid_amount"),
        ("NaN", "invalid_amount"),
        ("Infinity", "invalid_amount"),
        ("1_000", "invalid_amount"),
        ("USD 12", "invalid_amount"),
        ("١٢٣", "invalid_amount"),  # Arabic-Indic digits: Decimal would take them, we do not
        ("1234567890123456", "invalid_amount"),  # sixteen integer digits
        ("12.345,678", "amount_precision"),
        ("0,125", "amount_precision"),
        ("1234.567", "amount_precision"),
        ("12.3456", "amount_precision"),
    ],
)
def test_amount_rejects(text: str, code: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_amount(text)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("2026-02-28", "dmy", date(2026, 2, 28)),
        ("2026-02-28", "mdy", date(2026, 2, 28)),
        ("2026-2-8", "dmy", date(2026, 2, 8)),
        ("2026-02-28 00:00:00", "dmy", date(2026, 2, 28)),
        ("2026-02-28T00:00", "dmy", date(2026, 2, 28)),
        ("28-02-2026", "dmy", date(2026, 2, 28)),
        ("28/02/2026", "dmy", date(2026, 2, 28)),
        ("28.02.2026", "dmy", date(2026, 2, 28)),
        ("8-2-2026", "dmy", date(2026, 2, 8)),
        ("08-02-2026", "dmy", date(2026, 2, 8)),
        ("08-02-2026", "mdy", date(2026, 8, 2)),
        ("02/28/2026", "mdy", date(2026, 2, 28)),
        ("28022026", "dmy", date(2026, 2, 28)),
        ("02282026", "mdy", date(2026, 2, 28)),
        ("20260228", "dmy", date(2026, 2, 28)),  # yyyymmdd: no ddmmyyyy reading of it is a date
        (" 2026-02-28 ", "dmy", date(2026, 2, 28)),
    ],
)
def test_date_forms(text: str, order: str, expected: date) -> None:
    assert parse_date(text, order) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-02-30",
        "31-02-2026",
        "2026/02/28",
        "28-02/2026",
        "28-02-26",
        "2026-02-28 10:00",  # a time in a date column
        "01-01-1899",
        "01-01-2200",
        "yesterday",
        "2026-13-01",
        "99999999",
        "２０２６-02-28",  # full-width digits
    ],
)
def test_date_rejects(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_date(text, "dmy")
    assert info.value.code == "invalid_date"


def test_date_order_is_never_guessed_but_explained() -> None:
    with pytest.raises(InvalidValue) as info:
        parse_date("12-25-2025", "dmy")
    assert "day-first" in info.value.reason
    assert parse_date("12-25-2025", "mdy") == date(2025, 12, 25)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", date(2026, 3, 1)),
        ("01-03-2026", date(2026, 3, 1)),
        ("2026-03-01T10:15:00+01:00", datetime(2026, 3, 1, 10, 15, tzinfo=timezone(timedelta(hours=1)))),
        ("2026-03-01 10:15", datetime(2026, 3, 1, 10, 15)),
        ("2026-03-01T10:15:30Z", datetime(2026, 3, 1, 10, 15, 30, tzinfo=UTC)),
        (
            "2026-03-01T10:15:30.250-0230",
            datetime(2026, 3, 1, 10, 15, 30, 250000, tzinfo=timezone(-timedelta(hours=2, minutes=30))),
        ),
        ("01-03-2026 10:15:30", datetime(2026, 3, 1, 10, 15, 30)),
    ],
)
def test_date_or_datetime(text: str, expected: date | datetime) -> None:
    value = parse_date_or_datetime(text, "dmy")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "text", ["2026-03-01T25:00", "2026-03-01 10:61", "2026-03-01T10:00+25:00", "2026-03-01 noon", "T10:00"]
)
def test_date_or_datetime_rejects(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_date_or_datetime(text, "dmy")
    assert info.value.code == "invalid_date"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        (" True ", True),
        ("ja", True),
        ("nee", False),
        ("yes", True),
        ("no", False),
    ],
)
def test_bool(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "2", "maybe", "t rue", "-1"])
def test_bool_rejects(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_bool(text)
    assert info.value.code == "invalid_bool"


@pytest.mark.parametrize(
    "text",
    ["info@voorbeeld.nl", "jan.de.vries+facturen@sub.voorbeeld.co.uk", "a@b.nl", "x@müller.de", "x@example.xn--p1ai"],
)
def test_email_accepts(text: str) -> None:
    assert parse_email(f" {text} ") == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "info",
        "info@",
        "@voorbeeld.nl",
        "info@voorbeeld",
        "a b@c.nl",
        "a@b@c.nl",
        "a..b@c.nl",
        "a@b.nl;c@d.nl",
        "a@-b.nl",
        "a@b.n1",
        "x" * 250 + "@b.nl",
    ],
)
def test_email_rejects(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_email(text)
    assert info.value.code == "invalid_email"


def test_country_currency_language() -> None:
    assert parse_country(" nl ") == "NL"
    assert parse_country("BE") == "BE"
    assert parse_currency("eur") == "EUR"
    assert parse_currency("USD") == "USD"
    assert parse_language("NL") == "nl"
    assert parse_language("nl-BE") == "nl"
    assert parse_language("en_GB") == "en"
    for parse, text, code in [
        (parse_country, "Nederland", "invalid_country"),
        (parse_country, "XX", "invalid_country"),
        (parse_country, "NLD", "invalid_country"),
        (parse_currency, "EURO", "invalid_currency"),
        (parse_currency, "XXX", "invalid_currency"),
        (parse_language, "nld", "invalid_language"),
        (parse_language, "xx", "invalid_language"),
        (parse_language, "Nederlands", "invalid_language"),
    ]:
        with pytest.raises(InvalidValue) as info:
            parse(text)
        assert info.value.code == code, text
    with pytest.raises(InvalidValue) as info:
        parse_country("Holland")
    assert info.value.reason == "must be an ISO alpha-2 code"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("NL91ABNA0417164300", True),
        ("NL91 ABNA 0417 1643 00", True),
        ("nl91abna0417164300", True),
        ("GB82WEST12345698765432", True),
        ("DE89370400440532013000", True),
        ("BE68539007547034", True),
        ("FR1420041010050500013M02606", True),
        ("MT84MALT011000012345MTLCAST001S", True),
        ("NL91ABNA0417164301", False),  # check digits
        ("NL91ABNA041716430", False),  # NL length is 18
        ("DE8937040044053201300", False),
        ("123456789", False),  # an old Dutch account number
        ("NL91-ABNA-0417-1643-00", False),
        ("", False),
    ],
)
def test_iban(text: str, valid: bool) -> None:
    assert is_valid_iban(text) is valid


def test_normalise_iban() -> None:
    assert normalise_iban(" nl91 abna 0417 1643 00 ") == "NL91ABNA0417164300"


@pytest.mark.parametrize(
    ("text", "plausible"),
    [
        ("NL123456789B01", True),
        ("NL 1234.56.789.B.01", True),
        ("nl123456789b01", True),
        ("BE0123456789", True),
        ("DE123456789", True),
        ("ATU12345678", True),
        ("CHE123456789MWST", True),
        ("GB123456789", True),
        ("US12345678", True),  # no shape known: the generic one
        ("NL123456789", False),
        ("NL12345678B01", False),
        ("DE12345678", False),
        ("123456789B01", False),  # no country prefix
        ("B01", False),
    ],
)
def test_vat_number(text: str, plausible: bool) -> None:
    assert is_plausible_vat_number(text) is plausible


@pytest.mark.parametrize(
    ("text", "plausible"),
    [
        ("0301234567", True),
        ("030-1234567", True),
        ("+31 (0)30 123 45 67", True),
        ("0031 30 1234567", True),
        ("06 12345678", True),
        ("1234567", False),  # too short
        ("1234567890123456", False),  # too long
        ("0000000000", False),
        ("030 123 456 7 ext 12", False),
        ("n/a", False),
        ("+31+301234567", False),
    ],
)
def test_phone(text: str, plausible: bool) -> None:
    assert is_plausible_phone(text) is plausible
