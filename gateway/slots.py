"""When may a message go out? Pure slot arithmetic (DOMAIN.md §5), computed on UTC instants.

A *slot* is an instant whose wall-clock time in the administration's zone is a whole multiple of
``slot_minutes`` after midnight (:00 and :30 by default). A slot is *open* for a kind of message when its
local day is an allowed day of that kind, is not a public holiday of the administration's country, and its
local time lies in the window ``[start, end)``: with the default window 08:00–18:00 the last slot is 17:30.

Daylight saving, deliberately:
- all arithmetic is on aware UTC instants; ``wait`` is real elapsed time (an hour is 3,600 s even across a
  change), and slots are found from the wall clock at the instant, so a repeated hour (October) has its
  slots twice and a skipped hour (March) has none;
- a local time that does not exist (a window start inside the spring gap) is read with the offset in force
  before the change (PEP 495 ``fold=0``): 02:30 on the last Sunday of March becomes 03:30 CEST;
- a local time that exists twice (a window start inside the autumn overlap) means its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from gateway.config import WEEKDAYS, Administration

KINDS = ("invoice", "pre_reminder", "reminder", "final_reminder")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
MAX_DAYS_AHEAD = 800  # a calendar with no open day at all gives up after this (about two years)


@lru_cache(maxsize=256)
def public_holidays(country: str, year: int) -> frozenset[date]:
    """National public holidays of ``country`` (ISO alpha-2) in ``year``; empty for an unknown country."""
    import holidays  # here: the package of every country's rules is loaded only by what asks for a holiday

    try:
        found = holidays.country_holidays(country, years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(found)


@dataclass(frozen=True)
class Calendar:
    """An administration's sending calendar."""

    zone: ZoneInfo
    slot_minutes: int = 30
    wait: timedelta = timedelta(hours=1)
    window: tuple[time, time] = (time(8), time(18))
    invoice_days: frozenset[int] = frozenset(range(6))  # Monday = 0
    reminder_days: frozenset[int] = frozenset(range(5))
    country: str | None = "NL"  # None: no public holidays are skipped

    def days_for(self, kind: str) -> frozenset[int]:
        return self.invoice_days if kind == "invoice" else self.reminder_days

    def is_holiday(self, day: date) -> bool:
        return self.country is not None and day in public_holidays(self.country, day.year)

    def is_open_day(self, day: date, kind: str) -> bool:
        return day.weekday() in self.days_for(kind) and not self.is_holiday(day)


def make_calendar(admin: Administration) -> Calendar:
    s = admin.sending
    return Calendar(
        zone=ZoneInfo(admin.timezone),
        slot_minutes=s.slot_minutes,
        wait=timedelta(minutes=s.wait_minutes),
        window=(time.fromisoformat(s.window[0]), time.fromisoformat(s.window[1])),
        invoice_days=frozenset(WEEKDAYS.index(d) for d in s.invoice_days),
        reminder_days=frozenset(WEEKDAYS.index(d) for d in s.reminder_days),
        country=admin.country if s.skip_holidays else None,
    )


def _micros(instant: datetime) -> int:
    return (instant - EPOCH) // MICRO


def _offset_micros(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset // MICRO


def ceil_to_slot(instant: datetime, cal: Calendar) -> datetime:
    """The first slot at or after ``instant`` (an instant exactly on a slot is that slot)."""
    step = cal.slot_minutes * 60 * 1_000_000
    at = _micros(instant)
    offset = _offset_micros(instant, cal.zone)
    candidate = -((-(at + offset)) // step) * step - offset
    # The offset may differ at the candidate (a change in between): realign on the candidate's wall clock.
    later = _offset_micros(EPOCH + candidate * MICRO, cal.zone)
    if later != offset:
        candidate = -((-(candidate + later)) // step) * step - later
        if candidate < at:
            candidate += step
    return EPOCH + candidate * MICRO


def floor_to_slot(instant: datetime, cal: Calendar) -> datetime:
    """The slot that ``instant`` lies in (the last slot at or before it)."""
    step = cal.slot_minutes * 60 * 1_000_000
    at = _micros(instant)
    offset = _offset_micros(instant, cal.zone)
    return EPOCH + ((at + offset) // step * step - offset) * MICRO


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` (fold=0 for a missing or repeated time, see above)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def is_open(instant: datetime, kind: str, cal: Calendar) -> bool:
    """May a message of ``kind`` go out at ``instant``: an open day, inside the window?"""
    local = instant.astimezone(cal.zone)
    start, end = cal.window
    return cal.is_open_day(local.date(), kind) and start <= local.time() < end


def first_open_slot(earliest: datetime, kind: str, cal: Calendar) -> datetime:
    """The first slot at or after ``earliest`` on an open day of ``kind``, inside the window."""
    slot = ceil_to_slot(earliest, cal)
    first_day = slot.astimezone(cal.zone).date()
    while True:
        local = slot.astimezone(cal.zone)
        day = local.date()
        if (day - first_day).days > MAX_DAYS_AHEAD:
            raise ValueError("the sending calendar has no open slot (check the days and the window)")
        start, end = cal.window
        if not cal.is_open_day(day, kind) or local.time() >= end:
            slot = ceil_to_slot(local_instant(day + timedelta(days=1), start, cal.zone), cal)
            continue
        if local.time() < start:
            slot = ceil_to_slot(local_instant(day, start, cal.zone), cal)
            continue
        return slot


def invoice_slot(loaded_at: datetime, cal: Calendar) -> datetime:
    """DOMAIN.md §5: ``ceil_to_slot(loaded_at + wait)``, moved to the first open invoice slot."""
    return first_open_slot(loaded_at + cal.wait, "invoice", cal)


def day_slot(day: date, kind: str, cal: Calendar) -> datetime:
    """A step planned for ``day``: the first open slot of ``kind`` from that day's window start on."""
    return first_open_slot(local_instant(day, cal.window[0], cal.zone), kind, cal)


def next_wakeup(now: datetime, calendars: list[Calendar]) -> datetime:
    """The next slot boundary strictly after ``now`` over all calendars (the daemon's half-hourly tick)."""
    later = now + MICRO
    if not calendars:
        return ceil_to_slot(later, Calendar(zone=ZoneInfo("UTC")))
    return min(ceil_to_slot(later, cal) for cal in calendars)


def last_boundary(now: datetime, calendars: list[Calendar]) -> datetime:
    """The latest slot boundary at or before ``now`` over all calendars (the slot a pass at ``now`` is for)."""
    cals = calendars or [Calendar(zone=ZoneInfo("UTC"))]
    return max(ceil_to_slot(now - timedelta(minutes=cal.slot_minutes) + MICRO, cal) for cal in cals)


def local_day(instant: datetime, cal: Calendar) -> date:
    return instant.astimezone(cal.zone).date()
