"""Pure decisions about waiting: how long a rate limit or a transient failure asks us to back off.

Vendors say it differently (SPEC.md §1.6, §2.6, §3.5, §6.5, §6.16):
- ``Retry-After`` as seconds, as an absolute epoch timestamp (Moneybird since 2020), or as an HTTP date;
- ``X-RateLimit-Minutely-Reset`` / ``X-RateLimit-Reset`` in epoch **milliseconds** (Exact), only the family
  that ran out is present on a 429;
- ``RateLimit-Reset`` (Moneybird) next to ``Retry-After``;
- nothing at all: exponential backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

EPOCH_SECONDS_MIN = 10**9  # a value above this is a timestamp, not a delay (2001-09-09)
EPOCH_MILLIS_MIN = 10**12
BASE_DELAY = 1.0
MAX_BACKOFF = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.strip()
    return None


def seconds_until(value: str, now: datetime) -> float | None:
    """A wait from one header value: delay seconds, epoch seconds, epoch milliseconds or an HTTP date."""
    try:
        number = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        return max(0.0, (moment - now).total_seconds())
    if number != number or number < 0:  # NaN or negative
        return None
    if number >= EPOCH_MILLIS_MIN:
        return max(0.0, number / 1000 - now.timestamp())
    if number >= EPOCH_SECONDS_MIN:
        return max(0.0, number - now.timestamp())
    return number


def exponential(attempt: int) -> float:
    """1, 2, 4, … seconds for attempt 1, 2, 3, …, capped at MAX_BACKOFF."""
    return float(min(MAX_BACKOFF, BASE_DELAY * 2 ** max(0, attempt - 1)))


def decide_retry_wait(status: int | None, headers: Mapping[str, str], now: datetime, attempt: int) -> float:
    """How long to wait before retrying after ``status`` (None: a timeout or connection failure).

    The vendor's own word wins: ``Retry-After``, then the reset of a rate-limit family whose remaining count
    is 0 (or the only family present on a 429), then ``RateLimit-Reset``. Otherwise exponential backoff.
    """
    if status is not None:
        retry_after = _header(headers, "Retry-After")
        if retry_after is not None:
            wait = seconds_until(retry_after, now)
            if wait is not None:
                return wait
        if status == 429:
            reset = rate_limit_reset_wait(headers, now)
            if reset is not None:
                return reset
    return exponential(attempt)


def rate_limit_reset_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """The wait until an exhausted rate-limit window resets; None when no family is exhausted or named."""
    waits: list[float] = []
    for family in ("X-RateLimit-Minutely", "X-RateLimit", "RateLimit"):
        remaining = _header(headers, f"{family}-Remaining")
        reset = _header(headers, f"{family}-Reset")
        if reset is None:
            continue
        if remaining is not None and remaining not in ("0", "0.0"):
            continue
        wait = seconds_until(reset, now)
        if wait is not None:
            waits.append(wait)
    return max(waits) if waits else None


def decide_pause(headers: Mapping[str, str], now: datetime) -> float:
    """After a successful response: wait before the next request when a window is used up (0 = go on).

    Only the per-minute family (Exact) and the standard ``RateLimit-*`` family are honoured here: waiting
    for an exhausted **daily** window is left to the 429 and the wait budget of the run.
    """
    waits: list[float] = []
    for family in ("X-RateLimit-Minutely", "RateLimit"):
        remaining = _header(headers, f"{family}-Remaining")
        reset = _header(headers, f"{family}-Reset")
        if remaining in ("0", "0.0") and reset is not None:
            wait = seconds_until(reset, now)
            if wait is not None:
                waits.append(wait)
    return max(waits) if waits else 0.0


def is_retryable(status: int) -> bool:
    return status in RETRY_STATUSES
