"""Table-driven tests of the pure connector decisions: backoff from headers, token actions, value parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.backoff import decide_pause, decide_retry_wait, seconds_until
from connectors.base import TokenSet
from connectors.oauth import Action, decide_token_action, parse_token_response
from connectors.values import compact_date, money, ms_date, text

NOW = datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
EPOCH = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),  # delay seconds
        (str(EPOCH + 300), 300.0),  # Moneybird since 2020: an epoch timestamp
        (str((EPOCH + 61) * 1000), 61.0),  # Exact: epoch milliseconds
        (str(EPOCH - 50), 0.0),  # a moment in the past: go now
        ("Wed, 04 Mar 2026 13:02:00 GMT", 120.0),  # an HTTP date
        ("soon", None),
        ("-5", None),
    ],
)
def test_seconds_until(value: str, expected: float | None) -> None:
    assert seconds_until(value, NOW) == expected


@pytest.mark.parametrize(
    ("status", "headers", "attempt", "expected"),
    [
        (429, {"Retry-After": str(EPOCH + 300)}, 1, 300.0),
        (429, {"retry-after": "7"}, 3, 7.0),
        (429, {"X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": str((EPOCH + 45) * 1000)}, 1, 45.0),
        # Exact omits the other family on a 429; an exhausted daily window means a long wait
        (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str((EPOCH + 3600) * 1000)}, 1, 3600.0),
        (429, {"X-RateLimit-Remaining": "10", "X-RateLimit-Reset": str((EPOCH + 3600) * 1000)}, 2, 2.0),
        (429, {}, 1, 1.0),
        (503, {}, 4, 8.0),
        (503, {"Retry-After": "30"}, 1, 30.0),
        (None, {}, 10, 60.0),  # timeouts: exponential, capped
    ],
)
def test_decide_retry_wait(status: int | None, headers: dict[str, str], attempt: int, expected: float) -> None:
    assert decide_retry_wait(status, headers, NOW, attempt) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": str((EPOCH + 20) * 1000)}, 20.0),
        ({"X-RateLimit-Minutely-Remaining": "3", "X-RateLimit-Minutely-Reset": str((EPOCH + 20) * 1000)}, 0.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str((EPOCH + 9000) * 1000)}, 0.0),  # daily: not here
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": str(EPOCH + 100)}, 100.0),
        ({}, 0.0),
    ],
)
def test_decide_pause(headers: dict[str, str], expected: float) -> None:
    assert decide_pause(headers, NOW) == expected


def tokens(age: float, lifetime: float | None = 600, refresh: str | None = "r") -> TokenSet:
    obtained = NOW - timedelta(seconds=age)
    expires = obtained + timedelta(seconds=lifetime) if lifetime is not None else None
    return TokenSet("a", refresh, obtained, expires)


EXACT = timedelta(seconds=570)


@pytest.mark.parametrize(
    ("current", "rejected", "min_age", "action", "wait"),
    [
        (None, False, EXACT, Action.REAUTHORIZE, 0.0),
        (tokens(10), False, EXACT, Action.USE, 0.0),
        (tokens(569), False, EXACT, Action.USE, 0.0),  # inside the margin, but too early to refresh: use it
        (tokens(570), False, EXACT, Action.REFRESH, 0.0),  # the last 30 s: refresh now
        (tokens(700), False, EXACT, Action.REFRESH, 0.0),  # expired
        (tokens(100), True, EXACT, Action.WAIT, 470.0),  # refused early: wait for the 570-second rule
        (tokens(100), True, timedelta(0), Action.REFRESH, 0.0),  # a vendor without that rule
        (tokens(100, lifetime=None), False, timedelta(0), Action.USE, 0.0),  # no expiry given (Moneybird)
        (tokens(100, lifetime=None), True, timedelta(0), Action.REFRESH, 0.0),
        (tokens(700, refresh=None), False, EXACT, Action.REAUTHORIZE, 0.0),
    ],
)
def test_decide_token_action(
    current: TokenSet | None, rejected: bool, min_age: timedelta, action: Action, wait: float
) -> None:
    decision = decide_token_action(current, NOW, rejected=rejected, min_refresh_age=min_age)
    assert (decision.action, decision.wait_seconds) == (action, wait)


@pytest.mark.parametrize(
    ("body", "expires_in", "refresh"),
    [
        ({"access_token": "x", "token_type": "bearer", "expires_in": "600", "refresh_token": "n"}, 600, "n"),
        ({"access_token": "x", "token_type": "Bearer", "expires_in": 3600}, 3600, "old"),  # keeps the old one
        ({"access_token": "x", "token_type": "bearer", "refresh_token": "n"}, None, "n"),
    ],
)
def test_parse_token_response(body: dict[str, object], expires_in: int | None, refresh: str) -> None:
    previous = TokenSet("p", "old", NOW - timedelta(hours=1))
    parsed = parse_token_response(body, NOW, previous)
    assert parsed.refresh_token == refresh
    assert parsed.expires_at == (NOW + timedelta(seconds=expires_in) if expires_in else None)
    assert parsed.obtained_at == NOW


def test_token_set_round_trips_through_json() -> None:
    original = TokenSet("a", "r", NOW, NOW + timedelta(seconds=600), {"cluster": "https://c3"})
    assert TokenSet.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    ("value", "expected"),
    [(6352.5, "6352.50"), ("121.0", "121.00"), (0.1 + 0.2, "0.30"), (-12.005, "-12.01"), ("1210", "1210.00")],
)
def test_money(value: object, expected: str) -> None:
    assert money(value) == Decimal(expected)


@pytest.mark.parametrize("value", [None, True, "abc", float("nan"), "Infinity"])
def test_money_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        money(value)


def test_vendor_dates_and_padding() -> None:
    assert ms_date("/Date(1714521600000)/") == date(2024, 5, 1)
    assert ms_date("/Date(1714521600000+0100)/") == date(2024, 5, 1)
    assert compact_date("20200214") == date(2020, 2, 14)
    assert text("              1237") == "1237" and text("NL ") == "NL" and text("   ") is None
    with pytest.raises(ValueError):
        ms_date("2024-05-01")
