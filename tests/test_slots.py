"""The slot table (DOMAIN.md §5), the statutory cost table and the 14-day term (§6): pure, table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.collection import assumed_receipt, collection_costs, payment_deadline
from gateway.config import Administration, SendingSettings
from gateway.slots import (
    Calendar,
    ceil_to_slot,
    day_slot,
    floor_to_slot,
    invoice_slot,
    is_open,
    make_calendar,
    next_wakeup,
)

AMS = ZoneInfo("Europe/Amsterdam")
DEFAULT = make_calendar(Administration(code="ACME", name="Acme"))
# Every day, (almost) all day, no holidays: isolates the daylight-saving arithmetic.
ALWAYS = Calendar(zone=AMS, window=(time(0), time(23, 59)), invoice_days=frozenset(range(7)), country=None)


def ams(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=AMS)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (loaded at, local Amsterdam time; expected slot, local), default settings: wait 60, slots :00/:30,
# invoices Monday-Saturday 08:00-18:00, Dutch public holidays.
INVOICE_SLOTS = [
    ("2026-03-04 15:01", "2026-03-04 16:30", "DOMAIN example: 15:01 -> 16:30"),
    ("2026-03-04 15:29", "2026-03-04 16:30", "DOMAIN example: 15:29 -> 16:30"),
    ("2026-03-04 15:00", "2026-03-04 16:00", "an instant exactly on a slot is that slot"),
    ("2026-03-04 15:00:00.000001", "2026-03-04 16:30", "a microsecond after a slot is the next"),
    ("2026-03-07 20:15", "2026-03-09 08:00", "Saturday evening -> Monday morning"),
    ("2026-03-07 15:00", "2026-03-07 16:00", "Saturday is an invoice day"),
    ("2026-03-08 11:00", "2026-03-09 08:00", "Sunday -> Monday"),
    ("2026-03-04 16:30", "2026-03-04 17:30", "the last slot of the window is 17:30"),
    ("2026-03-04 16:31", "2026-03-05 08:00", "18:00 is outside the window [08:00, 18:00)"),
    ("2026-03-04 06:10", "2026-03-04 08:00", "before the window opens"),
    ("2026-03-04 07:00", "2026-03-04 08:00", "exactly at the window start"),
    ("2026-03-03 23:40", "2026-03-04 08:00", "after midnight, before the window"),
    ("2026-12-24 17:00", "2026-12-28 08:00", "Christmas: 25 and 26 December are holidays, 27 is a Sunday"),
    ("2026-04-02 17:00", "2026-04-04 08:00", "Good Friday (3 April 2026) is a holiday; Saturday is open"),
    ("2026-04-04 17:00", "2026-04-07 08:00", "Easter Sunday and Easter Monday"),
    ("2026-04-26 12:00", "2026-04-28 08:00", "King's Day (27 April)"),
    ("2026-03-28 16:45", "2026-03-30 08:00", "Saturday before the spring DST change"),
    ("2026-10-24 16:45", "2026-10-26 08:00", "Saturday before the autumn DST change"),
    ("2026-03-30 07:30", "2026-03-30 08:30", "first day of summer time"),
    ("2026-10-26 07:30", "2026-10-26 08:30", "first day of winter time"),
]


@pytest.mark.parametrize(("loaded", "expected", "why"), INVOICE_SLOTS, ids=[r[2] for r in INVOICE_SLOTS])
def test_invoice_slot_table(loaded: str, expected: str, why: str) -> None:
    slot = invoice_slot(ams(loaded), DEFAULT)
    assert slot.tzinfo is not None and slot.utcoffset() == timedelta(0), "slots are UTC instants"
    assert slot == ams(expected), why


# Daylight saving with a calendar open around the clock: (loaded at, UTC; expected slot, UTC).
DST_SLOTS = [
    # 29 March 2026: 02:00 CET (01:00 UTC) jumps to 03:00 CEST.
    (
        "2026-03-28 23:45",
        "2026-03-29 01:00",
        "00:45 CET + 1 h = 01:45 CET; next slot 02:00 CET does not exist: 03:00 CEST",
    ),
    ("2026-03-29 00:15", "2026-03-29 01:30", "01:15 CET + 1 h (real time) = 03:15 CEST -> 03:30 CEST"),
    ("2026-03-29 01:00", "2026-03-29 02:00", "03:00 CEST + 1 h = 04:00 CEST, on a slot"),
    # 25 October 2026: 03:00 CEST (01:00 UTC) falls back to 02:00 CET; 02:00-03:00 happens twice.
    ("2026-10-24 23:45", "2026-10-25 01:00", "01:45 CEST + 1 h = 02:45 CEST (first); next slot is 02:00 CET (second)"),
    ("2026-10-25 00:10", "2026-10-25 01:30", "02:10 CEST + 1 h = 02:10 CET -> 02:30 CET (the second 02:30)"),
    ("2026-10-24 23:10", "2026-10-25 00:30", "01:10 CEST + 1 h = 02:10 CEST -> 02:30 CEST (the first 02:30)"),
]


@pytest.mark.parametrize(("loaded", "expected", "why"), DST_SLOTS, ids=[r[2][:40] for r in DST_SLOTS])
def test_daylight_saving_slots(loaded: str, expected: str, why: str) -> None:
    slot = invoice_slot(utc(loaded), ALWAYS)
    assert slot == utc(expected), why
    assert slot - utc(loaded) >= timedelta(hours=1), "the wait is real elapsed time"
    assert slot.astimezone(AMS).minute in (0, 30) and slot.astimezone(AMS).second == 0


def test_a_window_start_in_the_spring_gap_is_read_with_the_old_offset() -> None:
    cal = Calendar(zone=AMS, window=(time(2, 30), time(23, 0)), reminder_days=frozenset(range(7)), country=None)
    # 02:30 does not exist on 29 March 2026: fold=0 reads it as 02:30 CET = 01:30 UTC = 03:30 CEST.
    assert day_slot(date(2026, 3, 29), "reminder", cal) == utc("2026-03-29 01:30")
    assert day_slot(date(2026, 3, 30), "reminder", cal) == utc("2026-03-30 00:30")  # 02:30 CEST


def test_a_window_start_in_the_autumn_overlap_is_its_first_occurrence() -> None:
    cal = Calendar(zone=AMS, window=(time(2, 30), time(23, 0)), reminder_days=frozenset(range(7)), country=None)
    assert day_slot(date(2026, 10, 25), "reminder", cal) == utc("2026-10-25 00:30")  # 02:30 CEST


# Reminder steps: (planned day, expected slot local). Reminders go Monday-Friday, at the window start.
REMINDER_SLOTS = [
    ("2026-03-04", "2026-03-04 08:00", "a Wednesday"),
    ("2026-03-07", "2026-03-09 08:00", "Saturday is not a reminder day"),
    ("2026-03-08", "2026-03-09 08:00", "Sunday"),
    ("2026-04-03", "2026-04-07 08:00", "Good Friday, the weekend and Easter Monday"),
    ("2026-12-25", "2026-12-28 08:00", "Christmas"),
    ("2026-12-31", "2026-12-31 08:00", "New Year's Eve is a working day"),
    ("2027-01-01", "2027-01-04 08:00", "New Year's Day"),
    ("2026-03-29", "2026-03-30 08:00", "the DST Sunday, then 08:00 CEST"),
]


@pytest.mark.parametrize(("day", "expected", "why"), REMINDER_SLOTS, ids=[r[2] for r in REMINDER_SLOTS])
def test_reminder_slot_table(day: str, expected: str, why: str) -> None:
    assert day_slot(date.fromisoformat(day), "reminder", DEFAULT) == ams(expected), why


def test_settings_change_days_window_and_holidays() -> None:
    admin = Administration(
        code="X",
        name="X",
        country="DE",
        sending=SendingSettings(
            wait_minutes=15, slot_minutes=15, invoice_days=("mon",), window=("09:00", "12:00"), skip_holidays=False
        ),
    )
    cal = make_calendar(admin)
    assert invoice_slot(ams("2026-03-09 09:50"), cal) == ams("2026-03-09 10:15")
    assert invoice_slot(ams("2026-03-09 11:50"), cal) == ams("2026-03-16 09:00")
    # Easter Monday 2026 is a holiday in Germany, but this administration does not skip holidays.
    assert invoice_slot(ams("2026-04-06 09:00"), cal) == ams("2026-04-06 09:15")
    german = make_calendar(Administration(code="Y", name="Y", country="DE"))
    assert german.is_holiday(date(2026, 10, 3)) and not DEFAULT.is_holiday(date(2026, 10, 3))


def test_is_open_floor_and_wakeup() -> None:
    assert is_open(ams("2026-03-04 08:00"), "invoice", DEFAULT)
    assert is_open(ams("2026-03-04 17:59"), "reminder", DEFAULT)
    assert not is_open(ams("2026-03-04 18:00"), "invoice", DEFAULT)
    assert not is_open(ams("2026-03-07 10:00"), "reminder", DEFAULT)  # Saturday
    assert is_open(ams("2026-03-07 10:00"), "invoice", DEFAULT)
    assert floor_to_slot(ams("2026-03-04 16:59"), DEFAULT) == ams("2026-03-04 16:30")
    assert ceil_to_slot(ams("2026-03-04 16:30"), DEFAULT) == ams("2026-03-04 16:30")
    assert next_wakeup(ams("2026-03-04 16:30"), [DEFAULT]) == ams("2026-03-04 17:00")
    assert next_wakeup(ams("2026-03-04 16:29:59"), [DEFAULT]) == ams("2026-03-04 16:30")
    india = Calendar(zone=ZoneInfo("Asia/Kolkata"))  # UTC+05:30: local :00/:30 are UTC :30/:00
    nepal = Calendar(zone=ZoneInfo("Asia/Kathmandu"))  # UTC+05:45
    assert ceil_to_slot(utc("2026-03-04 10:01"), india) == utc("2026-03-04 10:30")
    assert ceil_to_slot(utc("2026-03-04 10:01"), nepal) == utc("2026-03-04 10:15")


# DOMAIN.md §6 worked values (euro).
COSTS = [
    ("100", "40.00"),
    ("1000", "150.00"),
    ("2500", "375.00"),
    ("3000", "425.00"),
    ("10000", "875.00"),
    ("200000", "2775.00"),
    ("1000000", "6775.00"),
    ("5000000", "6775.00"),
    ("266.66", "40.00"),
    ("266.67", "40.00"),
    ("266.68", "40.00"),
    ("300", "45.00"),
    ("2500.01", "375.00"),
    ("5000", "625.00"),
    ("0", "0.00"),
]


@pytest.mark.parametrize(("principal", "costs"), COSTS)
def test_statutory_collection_costs(principal: str, costs: str) -> None:
    assert collection_costs(Decimal(principal)) == Decimal(costs)


def test_maximum_is_reached_near_one_million() -> None:
    # 2,775 at 200,000, then 0.5 %: the maximum 6,775 is reached at exactly 1,000,000.
    assert collection_costs(Decimal("999999.99")) == Decimal("6775.00")
    assert collection_costs(Decimal("999000")) == Decimal("6770.00")


RECEIPTS = [
    ("2026-03-05", "2026-03-07", "2026-03-21", "Thursday: Friday and Saturday count"),
    ("2026-03-06", "2026-03-10", "2026-03-24", "Friday: Sunday and Monday do not count"),
    ("2026-03-07", "2026-03-11", "2026-03-25", "Saturday"),
    ("2026-04-01", "2026-04-04", "2026-04-18", "Wednesday before Easter: Good Friday does not count"),
    ("2026-12-23", "2026-12-29", "2027-01-12", "Christmas and the weekend"),
]


@pytest.mark.parametrize(("sent", "receipt", "deadline", "why"), RECEIPTS, ids=[r[3] for r in RECEIPTS])
def test_assumed_receipt_and_deadline(sent: str, receipt: str, deadline: str, why: str) -> None:
    sent_on = date.fromisoformat(sent)
    assert assumed_receipt(sent_on, DEFAULT.is_holiday) == date.fromisoformat(receipt), why
    assert payment_deadline(sent_on, DEFAULT.is_holiday) == date.fromisoformat(deadline), why
