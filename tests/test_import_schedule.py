"""The import scheduler: pure due-time decisions with a fixed clock (DST, restarts, modes), and the file
modes (scheduled / off / on_delivery) against a real database and real claimed files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.app import App, build_app
from gateway.config import build_config
from gateway.import_schedule import RunHistory, decide_import_due, latest_import_time, next_import_time
from gateway.imports import NO_FILE, delivered_files, run_history
from gateway.intake import make_claimed_name
from gateway.store import transaction
from tests.connector_support import stored_invoices

AMS = ZoneInfo("Europe/Amsterdam")


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("times", "now", "expected"),
    [
        (["01:00"], ams(2026, 3, 4, 14, 0), utc(2026, 3, 4, 0, 0)),  # winter: 01:00 CET = 00:00 UTC
        (["01:00"], ams(2026, 7, 4, 14, 0), utc(2026, 6, 3, 23, 0) + timedelta(days=30)),  # summer: 23:00 UTC
        (["01:00"], ams(2026, 3, 4, 0, 59), utc(2026, 3, 3, 0, 0)),  # before today's time: yesterday's
        (["01:00", "13:00"], ams(2026, 3, 4, 14, 0), utc(2026, 3, 4, 12, 0)),
        # spring forward (29 March 2026, 02:00 → 03:00): 02:30 does not exist; it runs at 03:30 CEST
        (["02:30"], ams(2026, 3, 29, 12, 0), utc(2026, 3, 29, 1, 30)),
        # fall back (25 October 2026, 03:00 → 02:00): 02:30 happens twice; it runs at the first
        (["02:30"], ams(2026, 10, 25, 12, 0), utc(2026, 10, 25, 0, 30)),
        (["02:30"], utc(2026, 10, 25, 0, 29), utc(2026, 10, 24, 0, 30)),
        ([], ams(2026, 3, 4, 14, 0), None),
    ],
)
def test_latest_import_time(times: list[str], now: datetime, expected: datetime | None) -> None:
    assert latest_import_time(times, AMS, now) == expected


def test_next_import_time_across_the_spring_gap_is_23_hours_later() -> None:
    before = ams(2026, 3, 28, 3, 0).astimezone(UTC)
    assert next_import_time(["03:00"], AMS, before + timedelta(seconds=1)) == before + timedelta(hours=23)


SLOT = utc(2026, 3, 4, 0, 0)  # 01:00 Amsterdam


@pytest.mark.parametrize(
    ("mode", "now", "history", "due"),
    [
        # restart right before the import time: yesterday's import is done, nothing due
        ("scheduled", SLOT - timedelta(minutes=1), RunHistory(SLOT - timedelta(days=1, seconds=-5)), None),
        # right after it: due, exactly once
        ("scheduled", SLOT + timedelta(seconds=30), RunHistory(SLOT - timedelta(days=1, seconds=-5)), SLOT),
        # a restart after the import ran: not repeated
        ("scheduled", SLOT + timedelta(minutes=5), RunHistory(SLOT + timedelta(seconds=30)), None),
        # down for three days: one catch-up import
        ("scheduled", SLOT + timedelta(hours=2), RunHistory(SLOT - timedelta(days=3)), SLOT),
        # never imported: the latest import time is due
        ("scheduled", SLOT + timedelta(hours=2), RunHistory(), SLOT),
        # failed 5 minutes ago: retried after 15 minutes, not at once
        ("scheduled", SLOT + timedelta(minutes=10), RunHistory(None, SLOT + timedelta(minutes=5)), None),
        ("scheduled", SLOT + timedelta(minutes=21), RunHistory(None, SLOT + timedelta(minutes=5)), SLOT),
        # an import-now after the import time satisfies it
        ("scheduled", SLOT + timedelta(hours=3), RunHistory(SLOT + timedelta(hours=1)), None),
        ("off", SLOT + timedelta(seconds=30), RunHistory(), None),
        ("on_delivery", SLOT + timedelta(seconds=30), RunHistory(), None),
    ],
)
def test_decide_import_due(mode: str, now: datetime, history: RunHistory, due: datetime | None) -> None:
    assert decide_import_due(mode, ["01:00"], AMS, now, history) == due


# -- file modes against the database ---------------------------------------------------------------------

CSV = (
    "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)


def csv_file(invoices: list[str]) -> bytes:
    rows = [f"D1;Klant B.V.;Straat 1;1234AB;Utrecht;{n};2026-02-01;2026-03-01;100.00;100.00\n" for n in invoices]
    return (CSV + "".join(rows)).encode()


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock(SLOT - timedelta(hours=2))


def make(tmp_path: Path, database_url: str, clock: Clock, mode: str) -> App:
    data = {
        "gateway": {"data_dir": str(tmp_path), "database_url": database_url},
        "administrations": {"F": {"name": "File", "import_mode": mode, "import_times": ["01:00"]}},
    }
    return build_app(build_config(data, tmp_path, "test"), clock=clock)


@pytest.fixture
def scheduled(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[App]:
    app = make(tmp_path, database_url, clock, "scheduled")
    yield app
    app.engine.dispose()


def deliver(app: App, name: str, content: bytes, received: datetime) -> Path:
    folder = app.config.claimed_dir / "F"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / make_claimed_name(received, "0123abcd", name)
    path.write_bytes(content)
    return path


def test_scheduled_takes_the_newest_file_and_supersedes_older_ones(scheduled: App, clock: Clock) -> None:
    [first] = scheduled.imports.run_due()  # the first start catches up on yesterday's import time
    assert first.run["reason"] == NO_FILE
    old = deliver(scheduled, "monday.csv", csv_file(["A1", "A2"]), SLOT - timedelta(hours=5))
    deliver(scheduled, "tuesday.csv", csv_file(["B1"]), SLOT - timedelta(hours=1))
    assert scheduled.imports.run_due() == []  # before the import time: nothing is imported
    assert len(delivered_files(scheduled.config, "F")) == 2
    clock.moment = SLOT + timedelta(seconds=20)
    results = scheduled.imports.run_due()
    assert [r.status for r in results] == ["performed"]
    assert results[0].run["file"] == "tuesday.csv" and results[0].run["trigger"] == "schedule"
    assert set(stored_invoices(scheduled, "F")) == {"B1"}
    assert not old.exists() and delivered_files(scheduled.config, "F") == []
    superseded = list((scheduled.config.archive_dir / "F" / "superseded").rglob("*monday.csv"))
    assert len(superseded) == 1
    clock.moment = SLOT + timedelta(minutes=30)  # a restart later that night: nothing repeats
    assert scheduled.imports.run_due() == []


def test_scheduled_takes_only_open_items_and_keeps_their_done_marker(scheduled: App, clock: Clock) -> None:
    """Documents and archives are not snapshots: they never supersede or get superseded by open items. A
    claimed done marker is not a delivery; it travels with its file into the import (and is checked there)."""
    scheduled.imports.run_due()
    older = deliver(scheduled, "monday.csv", csv_file(["A1"]), SLOT - timedelta(hours=5))
    pdf = deliver(scheduled, "A1.pdf", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n", SLOT - timedelta(hours=2))
    # Named .pdf but CSV inside: a (bad) document, rejected on arrival, never the newest open items.
    fake_pdf = deliver(scheduled, "A2.pdf", b"debtor_code;invoice_number\n1;2\n", SLOT - timedelta(minutes=30))
    newest = deliver(scheduled, "tuesday.csv", csv_file(["B1"]), SLOT - timedelta(hours=1))
    marker = newest.with_name(newest.name + ".done")
    marker.write_text("0" * 64)  # a wrong SHA-256: the file must be rejected as corrupt, not imported
    files = delivered_files(scheduled.config, "F")
    assert [(f.original_name, f.marker) for f in files] == [("monday.csv", None), ("tuesday.csv", marker)]
    clock.moment = SLOT + timedelta(seconds=20)
    [result] = scheduled.imports.run_due()
    assert (result.run["file"], result.status) == ("tuesday.csv", "rejected")
    assert [e["code"] for e in result.run["errors"]] == ["done_marker_mismatch"]
    assert not older.exists() and not marker.exists() and pdf.exists() and fake_pdf.exists()
    assert stored_invoices(scheduled, "F") == {}


def test_scheduled_without_a_file_records_no_file_delivered_once(scheduled: App, clock: Clock) -> None:
    clock.moment = SLOT + timedelta(minutes=1)
    [result] = scheduled.imports.run_due()
    assert (result.status, result.run["reason"]) == ("performed", NO_FILE)
    assert [n["code"] for n in result.run["notices"]] == ["no_file_delivered"]
    assert result.run["counts"]["rows"] == 0
    clock.moment = SLOT + timedelta(hours=3)
    assert scheduled.imports.run_due() == []
    with transaction(scheduled.engine, write=False) as conn:
        assert run_history(conn, "F").last_completed_start == SLOT + timedelta(minutes=1)


def test_off_imports_only_on_import_now(tmp_path: Path, database_url: str, clock: Clock) -> None:
    app = make(tmp_path, database_url, clock, "off")
    try:
        deliver(app, "file.csv", csv_file(["C1"]), SLOT - timedelta(hours=1))
        clock.moment = SLOT + timedelta(minutes=1)
        assert app.imports.run_due() == []
        result = app.imports.run("F", "manual")
        assert (result.status, result.run["trigger"]) == ("performed", "manual")
        assert set(stored_invoices(app, "F")) == {"C1"}
        again = app.imports.run("F", "manual")  # import-now needs a fresh file
        assert again.run["reason"] == NO_FILE
    finally:
        app.engine.dispose()


def test_on_delivery_is_never_due(tmp_path: Path, database_url: str, clock: Clock) -> None:
    app = make(tmp_path, database_url, clock, "on_delivery")
    try:
        clock.moment = SLOT + timedelta(minutes=1)
        assert app.imports.due() == []
    finally:
        app.engine.dispose()
