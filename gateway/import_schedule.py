"""Pure decisions of the import scheduler: which import time is due, given the runs in the database.

An administration in ``scheduled`` mode imports at its ``import_times`` (HH:MM in its timezone, DST-aware).
Whether an import is due is decided from the database, never from memory (DESIGN.md rule 2): the latest
import time at or before now is due unless a scheduled or manual run **started** at or after it and did not
fail. A failed run is retried every ``retry_after`` until the next import time. After downtime there is one
catch-up import, not one per missed time. A local time that does not exist (the spring-forward gap) runs at
the same instant as the time just after the gap; an ambiguous one (fall-back) runs once, at its first
occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

RETRY_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class RunHistory:
    """What the database knows about scheduled and manual runs of one administration."""

    last_completed_start: datetime | None = None  # newest run (trigger schedule|manual) that did not fail
    last_failed_start: datetime | None = None  # newest such run that failed


def _local(day: datetime, hhmm: str, zone: ZoneInfo) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    moment = datetime.combine(day.date(), time(hour, minute), tzinfo=zone)  # fold=0: first of an ambiguous pair
    return moment.astimezone(UTC)  # a time in the gap maps to the instant after it (its pre-gap offset)


def import_moments(times: Sequence[str], zone: ZoneInfo, around: datetime) -> list[datetime]:
    """The import instants (UTC) of the local day before, of and after ``around``, sorted."""
    local = around.astimezone(zone)
    days = [local - timedelta(days=1), local, local + timedelta(days=1)]
    return sorted({_local(day, hhmm, zone) for day in days for hhmm in times})


def latest_import_time(times: Sequence[str], zone: ZoneInfo, now: datetime) -> datetime | None:
    """The newest import instant at or before ``now``; None without import times."""
    past = [m for m in import_moments(times, zone, now) if m <= now]
    return past[-1] if past else None


def next_import_time(times: Sequence[str], zone: ZoneInfo, now: datetime) -> datetime | None:
    future = [m for m in import_moments(times, zone, now) if m > now]
    return future[0] if future else None


def decide_import_due(
    mode: str,
    times: Sequence[str],
    zone: ZoneInfo,
    now: datetime,
    history: RunHistory,
    retry_after: timedelta = RETRY_AFTER,
) -> datetime | None:
    """The import time that is due now (the scheduled run's reason), or None when nothing is due."""
    if mode != "scheduled":
        return None
    slot = latest_import_time(times, zone, now)
    if slot is None:
        return None
    if history.last_completed_start is not None and history.last_completed_start >= slot:
        return None
    failed = history.last_failed_start
    if failed is not None and failed >= slot and now < failed + retry_after:
        return None
    return slot
