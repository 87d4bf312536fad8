"""Expected delivery (issue 7 item 5): is an administration's import overdue? Pure; time is a parameter.

Each expected time E (HH:MM in the administration's zone, DST-aware like the import schedule) has a deadline
``E + grace``. The delivery for E is a successful import after the previous deadline: so an early delivery
(before E) counts, and yesterday's late one does not count for today. Once the newest deadline has passed
without such an import, the administration is overdue; the lapse is named by that deadline, so the daemon
warns once per lapse. A spring-forward time that does not exist falls on the instant after the gap; an
ambiguous fall-back time is its first occurrence (``gateway.import_schedule.import_moments``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.import_schedule import import_moments


@dataclass(frozen=True)
class Expectation:
    expected_at: datetime | None  # the expected time whose deadline passed most recently
    deadline: datetime | None  # expected_at + grace: the lapse's identity when overdue
    next_deadline: datetime | None  # the next deadline still ahead
    overdue: bool
    lag_seconds: float | None  # now - the last successful import (None: never)


def previous_moment(times: Sequence[str], zone: ZoneInfo, before: datetime) -> datetime | None:
    """The newest expected instant strictly before ``before`` (looked for up to three days back)."""
    for days in (0, 1, 2):
        around = before - timedelta(days=days)
        earlier = [m for m in import_moments(times, zone, around) if m < before]
        if earlier:
            return earlier[-1]
    return None


def decide_expectation(
    times: Sequence[str],
    zone: ZoneInfo,
    grace: timedelta,
    now: datetime,
    last_success: datetime | None,
) -> Expectation:
    lag = None if last_success is None else max(0.0, (now - last_success).total_seconds())
    if not times:
        return Expectation(None, None, None, False, lag)
    # the newest E with E + grace <= now
    expected = previous_moment(times, zone, now - grace + timedelta(microseconds=1))
    upcoming = [m + grace for m in import_moments(times, zone, now) if m + grace > now]
    next_deadline = upcoming[0] if upcoming else None
    if expected is None:
        return Expectation(None, None, next_deadline, False, lag)
    deadline = expected + grace
    before = previous_moment(times, zone, expected)
    window_start = before + grace if before is not None else None
    delivered = last_success is not None and (window_start is None or last_success > window_start)
    return Expectation(expected, deadline, next_deadline, not delivered, lag)
