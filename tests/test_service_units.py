"""Pure parts of the service: expected delivery across DST with fixed clocks, sd_notify's message format and
environment handling (on a real datagram socket), health decisions, reload decisions, the [http],
[retention] and expected settings."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config import build_config
from gateway.errors import ConfigError
from gateway.expected import decide_expectation
from gateway.health import decide_healthy
from gateway.notify import Notifier, one_line, watchdog_interval
from gateway.reload import describe_changes, live_config, restart_only_changes

AMS = ZoneInfo("Europe/Amsterdam")
GRACE = timedelta(hours=2)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("times", "now", "last", "overdue", "deadline"),
    [
        # winter: 01:00 CET = 00:00 UTC; deadline 02:00 UTC
        (["01:00"], utc(2026, 3, 4, 1, 59), utc(2026, 3, 3, 0, 5), False, utc(2026, 3, 3, 2)),
        (["01:00"], utc(2026, 3, 4, 2, 0), utc(2026, 3, 3, 0, 5), True, utc(2026, 3, 4, 2)),
        (["01:00"], utc(2026, 3, 4, 2, 0), utc(2026, 3, 3, 23, 50), False, utc(2026, 3, 4, 2)),  # early counts
        (["01:00"], utc(2026, 3, 4, 2, 0), utc(2026, 3, 3, 1, 59), True, utc(2026, 3, 4, 2)),  # yesterday's late
        (["01:00"], utc(2026, 3, 4, 2, 0), None, True, utc(2026, 3, 4, 2)),
        # summer: 01:00 CEST = 23:00 UTC the day before; deadline 01:00 UTC
        (["01:00"], utc(2026, 7, 1, 0, 59), utc(2026, 6, 29, 23, 30), False, utc(2026, 6, 30, 1)),
        (["01:00"], utc(2026, 7, 1, 1, 0), utc(2026, 6, 29, 23, 30), True, utc(2026, 7, 1, 1)),
        # spring forward (29 March 2026): 02:30 does not exist, it is 01:30 UTC (03:30 CEST); deadline 03:30 UTC
        (["02:30"], utc(2026, 3, 29, 3, 29), utc(2026, 3, 28, 1, 35), False, utc(2026, 3, 28, 3, 30)),
        (["02:30"], utc(2026, 3, 29, 3, 30), utc(2026, 3, 28, 1, 35), True, utc(2026, 3, 29, 3, 30)),
        # fall back (25 October 2026): 02:30 happens twice; the first (00:30 UTC) counts; deadline 02:30 UTC
        (["02:30"], utc(2026, 10, 25, 2, 29), utc(2026, 10, 24, 0, 35), False, utc(2026, 10, 24, 2, 30)),
        (["02:30"], utc(2026, 10, 25, 2, 30), utc(2026, 10, 24, 0, 35), True, utc(2026, 10, 25, 2, 30)),
        (["02:30"], utc(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 40), False, utc(2026, 10, 25, 2, 30)),
        # two times a day: the 13:00 delivery (12:00 UTC, deadline 14:00 UTC) is missing
        (["01:00", "13:00"], utc(2026, 3, 4, 14, 0), utc(2026, 3, 4, 0, 10), True, utc(2026, 3, 4, 14)),
        (["01:00", "13:00"], utc(2026, 3, 4, 14, 0), utc(2026, 3, 4, 11, 0), False, utc(2026, 3, 4, 14)),
    ],
)
def test_expectation_across_dst(
    times: list[str], now: datetime, last: datetime | None, overdue: bool, deadline: datetime
) -> None:
    e = decide_expectation(times, AMS, GRACE, now, last)
    assert e.overdue is overdue
    assert e.deadline == deadline
    assert e.expected_at == deadline - GRACE
    assert e.next_deadline is not None and e.next_deadline > now
    assert e.lag_seconds == (None if last is None else (now - last).total_seconds())


def test_a_lapse_keeps_its_deadline_until_the_next_one_passes() -> None:
    """The daemon warns once per lapse: the same deadline while overdue, a new one a day later."""
    first = decide_expectation(["01:00"], AMS, GRACE, utc(2026, 3, 4, 2, 0), None)
    later = decide_expectation(["01:00"], AMS, GRACE, utc(2026, 3, 4, 23, 0), None)
    next_day = decide_expectation(["01:00"], AMS, GRACE, utc(2026, 3, 5, 2, 0), None)
    assert first.deadline == later.deadline != next_day.deadline
    assert decide_expectation([], AMS, GRACE, utc(2026, 3, 4), None).overdue is False


def test_notifier_sends_datagrams_and_is_a_no_op_without_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
        assert n.enabled and n.ping_interval == 2.0
        assert n.ready("line one\nline two")
        assert server.recv(4096) == b"READY=1\nSTATUS=line one line two"
        assert n.reloading()
        fields = dict(x.split("=", 1) for x in server.recv(4096).decode().splitlines())
        assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) > 0
        assert n.watchdog() and server.recv(4096) == b"WATCHDOG=1"
        assert n.stopping() and server.recv(4096).startswith(b"STOPPING=1\n")
        n.close()
    finally:
        server.close()
    quiet = Notifier({})
    assert not quiet.enabled and quiet.ping_interval is None and quiet.ready("x") is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert gone.watchdog() is False  # logged once, never raised


def test_abstract_notify_socket() -> None:
    name = f"payt-gateway-test-{id(object())}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert server.recv(64) == b"WATCHDOG=1"
        n.close()
    finally:
        server.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}, 10) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "10"}, 10) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}, 10) is None
    assert watchdog_interval({}, 10) is None
    assert len(one_line("x" * 500)) == 200


def test_decide_healthy() -> None:
    assert decide_healthy(True, [], True) == []
    assert decide_healthy(False, ["worker"], False) == [
        "database unreachable",
        "worker thread is not running",
        "the worker has made no progress (stuck)",
    ]


def test_http_retention_and_expected_settings() -> None:
    base = Path("/srv/gw")
    built_in = build_config({}, base, "built-in default")
    assert built_in.http.enabled and (built_in.http.bind, built_in.http.port) == ("127.0.0.1", 9180)
    assert build_config({}, base, "gateway.toml").http.enabled is False  # a file without [http]
    assert build_config({"http": {}}, base, "gateway.toml").http.enabled is True
    assert built_in.retention.archive_years == 7
    with pytest.raises(ConfigError) as bad:
        build_config(
            {
                "http": {"port": 70000, "bindd": "x"},
                "retention": {"archive_years": 0},
                "administrations": {"A": {"expected": {"times": ["25:00"], "grace": 3}}},
            },
            base,
            "gateway.toml",
        )
    problems = bad.value.problems
    assert any(p.startswith("http.port: must be a whole number") for p in problems)
    assert "http.bindd: unknown key" in problems
    assert any(p.startswith("retention: the period") for p in problems)
    assert any(p.startswith("administrations.A.expected.times") for p in problems)
    assert "administrations.A.expected.grace: unknown key" in problems
    admins = build_config(
        {"administrations": {"A": {"import_times": ["06:00"]}, "B": {"import_mode": "off"}}}, base, "x"
    ).administrations
    assert admins["A"].expected_times == ("06:00",) and admins["A"].expected.enabled
    assert admins["B"].expected.enabled is False


def test_reload_decisions() -> None:
    base = Path("/srv/gw")
    old = build_config({"administrations": {"A": {}, "B": {}}}, base, "x")
    new = build_config(
        {"gateway": {"data_dir": "other"}, "http": {"port": 1}, "administrations": {"A": {"name": "x"}, "C": {}}},
        base,
        "x",
    )
    assert restart_only_changes(old, new) == ["data_dir", "database_url", "http"]
    live = live_config(old, new)
    assert (live.data_dir, live.database_url, live.http) == (old.data_dir, old.database_url, old.http)
    assert live.administrations == new.administrations
    changes = describe_changes(old, new)
    assert (changes["added"], changes["removed"], changes["changed"]) == (["C"], ["B"], ["A"])
    assert restart_only_changes(old, replace(old, settle_seconds=9)) == []
