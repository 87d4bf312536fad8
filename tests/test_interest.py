"""Statutory interest (gateway/interest.py) with worked values computed by hand, and its configuration."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import build_config, load_config
from gateway.errors import ConfigError
from gateway.interest import NoRate, RatePeriod, add_years, interest_kind, statutory_interest
from gateway.messages import MessageBuilder, MessageInput

# The Dutch rates of 2024-2026 (consumer: wettelijke rente; commercial: wettelijke handelsrente).
RATES = (
    RatePeriod(date(2024, 1, 1), Decimal("7"), Decimal("12.5")),
    RatePeriod(date(2024, 7, 1), Decimal("7"), Decimal("12.25")),
    RatePeriod(date(2025, 1, 1), Decimal("6"), Decimal("11.15")),
    RatePeriod(date(2025, 7, 1), Decimal("6"), Decimal("10.15")),
    RatePeriod(date(2026, 1, 1), Decimal("4"), Decimal("10.15")),
)
TEN = (RatePeriod(date(2020, 1, 1), Decimal("10"), Decimal("10")),)  # one constant rate, for the year rules

# Interest runs over the days after the due date up to and including "as of", 365 days a year; each whole year
# after the due date its interest (rounded to the cent) is added to the amount (art. 6:119 lid 2 BW).
CASES = [
    # (principal, due, as of, periods, kind, expected) — with the hand computation
    # Nothing on the due date itself; one day after it: 1000 × 4 % / 365 = 0.1096.
    ("1000.00", date(2026, 1, 31), date(2026, 1, 31), RATES, "consumer", "0.00"),
    ("1000.00", date(2026, 1, 31), date(2026, 2, 1), RATES, "consumer", "0.11"),
    # 1 Feb .. 2 Mar 2026 = 28 + 2 = 30 days at 4 %: 1000 × 4 × 30 / 36500 = 3.2877.
    ("1000.00", date(2026, 1, 31), date(2026, 3, 2), RATES, "consumer", "3.29"),
    # The same days at the commercial 10.15 %: 1000 × 10.15 × 30 / 36500 = 8.3425.
    ("1000.00", date(2026, 1, 31), date(2026, 3, 2), RATES, "commercial", "8.34"),
    # Across 1 July 2025, commercial: 16..30 June = 15 days at 11.15 %, 1..15 July = 15 days at 10.15 %:
    # 10000 × (15 × 11.15 + 15 × 10.15) / 36500 = 10000 × 319.5 / 36500 = 87.5342.
    ("10000.00", date(2025, 6, 15), date(2025, 7, 15), RATES, "commercial", "87.53"),
    # Across 1 January 2026, consumer: 2..31 December = 30 days at 6 %, 1..31 January = 31 days at 4 %:
    # 2500 × (180 + 124) / 36500 = 760000 / 36500 = 20.8219.
    ("2500.00", date(2025, 12, 1), date(2026, 1, 31), RATES, "consumer", "20.82"),
    # Compounded: due 1 March 2024. Year 1 = 2 March 2024 .. 1 March 2025 (365 days): 305 days at 7 % (to
    # 31 December) and 60 days at 6 %: 1000 × (2135 + 360) / 36500 = 68.3562 → 68.36, added to the amount.
    # Year 2 so far = 2 .. 31 March 2025, 30 days at 6 %: 1068.36 × 180 / 36500 = 5.2686 → 5.27.
    # Total 73.63 (simple interest would be 68.36 + 4.93 = 73.29).
    ("1000.00", date(2024, 3, 1), date(2025, 3, 31), RATES, "consumer", "73.63"),
    # Two whole years at 10 %: year 1 = 2 January 2023 .. 1 January 2024 (365 days): 100.00; year 2 on
    # 1100.00 = 2 January 2024 .. 1 January 2025 (366 days, a leap year): 1100 × 10 × 366 / 36500 = 110.3014.
    ("1000.00", date(2023, 1, 1), date(2025, 1, 1), TEN, "consumer", "210.30"),
    # Due on 29 February: its anniversary is 28 February 2025. Year 1 = 1 March 2024 .. 28 February 2025
    # (365 days): 100.00; then 1 March 2025 on 1100.00: 1100 × 10 / 36500 = 0.3014.
    ("1000.00", date(2024, 2, 29), date(2025, 3, 1), TEN, "commercial", "100.30"),
    # Nothing is owed on nothing (a credit note) or a zero amount.
    ("0.00", date(2026, 1, 1), date(2026, 6, 1), RATES, "consumer", "0.00"),
    ("-50.00", date(2026, 1, 1), date(2026, 6, 1), RATES, "consumer", "0.00"),
]


@pytest.mark.parametrize(("principal", "due", "as_of", "periods", "kind", "expected"), CASES)
def test_statutory_interest_worked_values(
    principal: str, due: date, as_of: date, periods: tuple[RatePeriod, ...], kind: str, expected: str
) -> None:
    assert statutory_interest(Decimal(principal), due, as_of, periods, kind) == Decimal(expected)


def test_a_day_before_the_first_configured_period_has_no_rate() -> None:
    with pytest.raises(NoRate, match=r"2023-12-02 \(the first period starts 2024-01-01\)"):
        statutory_interest(Decimal("100"), date(2023, 12, 1), date(2024, 2, 1), RATES)
    with pytest.raises(NoRate, match="no statutory interest rates configured"):
        statutory_interest(Decimal("100"), date(2026, 1, 1), date(2026, 2, 1), ())
    # the first interest day on the first period's start is covered
    assert statutory_interest(Decimal("365"), date(2023, 12, 31), date(2024, 1, 1), RATES) == Decimal("0.07")


def test_the_rate_kind_of_a_debtor_and_anniversaries() -> None:
    assert (interest_kind(True), interest_kind(False), interest_kind(None)) == ("commercial", "consumer", "consumer")
    assert add_years(date(2024, 2, 29), 1) == date(2025, 2, 28) and add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)
    with pytest.raises(ValueError, match="kind"):
        statutory_interest(Decimal(1), date(2026, 1, 1), date(2026, 2, 1), RATES, "business")


def test_the_configured_periods_are_read_in_order(tmp_path: Path) -> None:
    config = build_config(
        {
            "interest": {
                "statutory": [
                    {"from": "2025-07-01", "consumer": 6, "commercial": 10.15},
                    {"from": date(2026, 1, 1), "consumer": 4.0, "commercial": 10.15},  # a TOML date
                ]
            }
        },
        tmp_path,
        "test",
    )
    assert config.interest_rates == (
        RatePeriod(date(2025, 7, 1), Decimal("6"), Decimal("10.15")),
        RatePeriod(date(2026, 1, 1), Decimal("4.0"), Decimal("10.15")),
    )
    assert build_config({}, tmp_path, "test").interest_rates == ()


@pytest.mark.parametrize(
    ("interest", "problem"),
    [
        (
            {"statutory": [{"from": "2026-01-01", "consumer": 4, "commercial": 10.15}, {"from": "2025-07-01",
             "consumer": 6, "commercial": 10.15}]},
            "interest.statutory[1].from: must be after the previous entry's from (2026-01-01) (got '2025-07-01')",
        ),
        (
            {"statutory": [{"from": "2026-01-01", "consumer": 4, "commercial": 10.15}, {"from": "2026-01-01",
             "consumer": 4, "commercial": 10.15}]},
            "interest.statutory[1].from: must be after the previous entry's from (2026-01-01)",
        ),
        (
            {"statutory": [{"from": "2026-01-01", "consumer": -1, "commercial": 10.15}]},
            "interest.statutory[0].consumer: must be a yearly percentage from 0 to 100, such as 4.0 (got -1)",
        ),
        (
            {"statutory": [{"from": "2026-01-01", "consumer": 4, "commercial": "10.15"}]},
            "interest.statutory[0].commercial: must be a yearly percentage",
        ),
        (
            {"statutory": [{"from": "1 januari 2026", "consumer": 4, "commercial": 10.15}]},
            "interest.statutory[0].from: must be a date such as 2026-01-01",
        ),
        (
            {"statutory": [{"from": "2026-01-01", "consumer": 4}]},
            "interest.statutory[0].commercial: required",
        ),
        (
            {"statutory": [{"from": "2026-01-01", "consumer": 4, "commercial": 10.15, "rate": 5}]},
            "interest.statutory[0].rate: unknown key",
        ),
        ({"statutory": [], "legal": []}, "interest.legal: unknown key"),
        ({"statutory": {"from": "2026-01-01"}}, "interest.statutory: must be an array of tables"),
        ({"statutory": ["2026-01-01"]}, "interest.statutory[0]: must be a table with from, consumer and commercial"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_key(tmp_path: Path, interest: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"interest": interest}, tmp_path, "test")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_quick_start_configuration_ships_the_rates_in_ascending_order() -> None:
    root = Path(__file__).resolve().parents[1]
    rates = load_config(str(root / "gateway.toml")).interest_rates
    assert rates and [r.start for r in rates] == sorted({r.start for r in rates})
    by_start = {r.start: r for r in rates}
    # values checked against public sources (rijksoverheid.nl and others) when they were added
    assert by_start[date(2024, 1, 1)] == RatePeriod(date(2024, 1, 1), Decimal("7.0"), Decimal("12.5"))
    assert by_start[date(2024, 7, 1)] == RatePeriod(date(2024, 7, 1), Decimal("7.0"), Decimal("12.25"))


@pytest.mark.parametrize(
    ("language", "interest", "expected", "absent"),
    [
        ("nl", "consumer", "daarnaast de wettelijke rente (artikel 6:119 van het Burgerlijk Wetboek)", "handelsrente"),
        ("nl", "commercial", "daarnaast de wettelijke handelsrente (artikel 6:119a van het", "6:119 van"),
        ("en", "consumer", "we may charge statutory interest (article 6:119 of the Dutch Civil Code)", "commercial"),
        ("en", "commercial", "statutory commercial interest (article 6:119a of the Dutch Civil Code)", "6:119 of"),
        ("nl", None, "Vermeld bij uw betaling", "rente"),  # no rates configured: no word about interest
        ("en", None, "Please quote", "interest"),
    ],
)
def test_the_final_reminder_says_interest_may_be_charged(
    language: str, interest: str | None, expected: str, absent: str
) -> None:
    message = MessageInput(
        administration_code="ACME", administration_name="Acme B.V.", from_address="facturen@acme.example",
        from_name="", kind="final_reminder", sequence=1, recipient="d@example.org", recipient_name="D",
        language=language, salutation="Dear Sir or Madam", number="A1", invoice_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31), amount_total_cents=12_100, amount_open_cents=12_100, currency="EUR",
        sent_at=datetime(2026, 4, 24, 6, tzinfo=UTC), consumer=True, deadline=date(2026, 5, 12), costs_cents=4_000,
        interest=interest,
    )  # fmt: skip
    _, body = MessageBuilder().render(message)
    text = " ".join(body.split())
    assert expected in text and absent not in text
    assert "\n\n\n" not in body  # the optional paragraph leaves no extra blank lines
