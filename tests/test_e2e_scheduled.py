"""End to end: scheduled imports in ``payt-gateway run`` (a subprocess): a Moneybird poll caught up at start-up,
and a delivered file that waits, claimed, for its administration's import time.

Import times have minute resolution and the real clock would make a test wait up to a minute for the next
one. So the daemon runs with ``--now``: its clock starts at that time and runs on at the real pace (the same
clock drives everything in the process); started at 00:59:52, its 01:00 import comes 8 seconds later. Nothing
of the gateway is replaced. The fake Moneybird serves the real clock (the connector's rate-limit waits are
real); only the gateway's notion of the date is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.base import RealClock
from tests.fakes.moneybird import FakeMoneybird
from tests.test_e2e_daemon import VALID, Daemon, cli, cli_json, drop_by_rename, write_config

pytestmark = pytest.mark.e2e

START = "2026-03-04T00:59:52+01:00"  # the daemon's clock starts here: its 01:00 import comes 8 s later
BEFORE = "2026-03-04T00:59:00+01:00"  # a manual import of FILE just before the daemon starts
IMPORT_TIME = datetime.fromisoformat("2026-03-04T01:00:00+01:00")
QUERY_AT = "2026-03-04T01:05:00+01:00"  # the CLI's --now when reading back (within the listing's 31 days)


@pytest.fixture
def moneybird() -> Iterator[FakeMoneybird]:
    with FakeMoneybird(RealClock()) as fake:
        contact = fake.add_contact("5001", "Poll B.V.", sepa_iban="NL91ABNA0417164300")
        fake.add_invoice(contact, "MB-1", "121.00", "121.00")
        fake.add_invoice(contact, "MB-2", "60.50", "20.00")
        yield fake


def schedule_config(root: Path, fake: FakeMoneybird) -> Path:
    """The e2e configuration (ACME, on delivery, stays idle) with a scheduled Moneybird and a scheduled file
    administration; no HTTP endpoint (a fixed port)."""
    return write_config(
        root,
        extra=f"""
[http]
enabled = false

[administrations.MB]
name = "Moneybird klant"
source = "moneybird"
import_mode = "scheduled"
import_times = ["00:30"]

[administrations.MB.connector]
base_url = "{fake.base_url}/api/v2"
administration_id = "{fake.administration_id}"

[administrations.FILE]
name = "File klant"
source = "file"
import_mode = "scheduled"
import_times = ["01:00"]
""",
    )


def test_a_scheduled_poll_and_a_file_that_waits_for_its_import_time(
    tmp_path: Path, moneybird: FakeMoneybird, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = schedule_config(tmp_path, moneybird)
    env = {"PAYT_GATEWAY_MB_TOKEN": "personal-token"}  # the secret through the environment, never the file
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    # FILE imported (nothing) at 00:59, after its last import time (yesterday 01:00): nothing is due at start.
    before = cli(config, "--now", BEFORE, "--json", "import-now", "FILE")
    assert before.returncode == 1, before.stderr  # "no file delivered" is performed, yet nothing was imported
    assert json.loads(before.stdout)["reason"] == "no file delivered since the last import"
    inbox = tmp_path / "inbox" / "FILE"
    inbox.mkdir(parents=True)
    drop_by_rename(inbox, "open-items.csv", VALID)  # delivered before its import time

    d = Daemon(config, env=env, options=("--now", START))
    try:
        # MB has never imported: its 00:30 import is caught up at start-up, secrets from the environment.
        poll = d.wait_for(lambda: [e for e in d.events("poll_finished") if e["administration"] == "MB"])[0]
        assert (poll["outcome"], poll["trigger"]) == ("performed", "schedule"), poll
        waiting = d.wait_for(lambda: d.events("file_waiting"))[0]
        assert (waiting["administration"], waiting["file"], waiting["mode"]) == ("FILE", "open-items.csv", "scheduled")
        assert not [e for e in d.events("file_processed") if e["administration"] == "FILE"]

        imported = d.wait_for(
            lambda: [e for e in d.events("file_processed") if e["file"] == "open-items.csv"], timeout=25
        )[0]
        assert imported["outcome"] == "performed" and imported["counts"]["invoices_created"] == 2
        code = d.stop()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    assert code == 0, "".join(d.lines)
    stopped = d.events("gateway_stopped")
    assert len(stopped) == 1 and "reason" not in stopped[0]

    every = list(cli_json(config, "--now", QUERY_AT, "imports"))
    mb_runs = [r for r in every if r["administration"] == "MB"]
    polls = [r for r in mb_runs if r["format"] == "payt-csv"]
    assert len(polls) == 1
    run = polls[0]
    assert (run["source"], run["trigger"], run["status"]) == ("moneybird", "schedule", "performed")
    assert run["counts"]["invoices_created"] == 2 and run["counts"]["debtors_created"] == 1
    assert datetime.fromisoformat(run["started_at"]) >= datetime.fromisoformat(START)
    assert (tmp_path / run["archived_path"]).is_file()
    pdfs = sorted((r["file"], r["source"], r["trigger"], r["status"]) for r in mb_runs if r["format"] == "pdf")
    assert pdfs == [
        ("moneybird/MB-1.pdf", "moneybird", "schedule", "performed"),
        ("moneybird/MB-2.pdf", "moneybird", "schedule", "performed"),
    ]
    assert all(r.headers.get("authorization") == "Bearer personal-token" for r in moneybird.requests_to("/api/v2/"))

    taken = [r for r in every if r["administration"] == "FILE" and r["file"] == "open-items.csv"]
    assert len(taken) == 1
    assert (taken[0]["trigger"], taken[0]["status"], taken[0]["source"]) == ("schedule", "performed", "file")
    late = datetime.fromisoformat(taken[0]["started_at"]) - IMPORT_TIME
    assert timedelta(0) <= late < timedelta(seconds=5), "at its import time: not before, and woken for it"

    invoices = {
        (i["administration"], i["number"]): i
        for i in cli_json(config, "--now", QUERY_AT, "invoices", "--status", "all")
    }
    assert invoices[("MB", "MB-2")]["amount_open"] == "20.00"
    assert invoices[("MB", "MB-1")]["documents"] == ["pdf"]
    assert {k for k in invoices if k[0] == "FILE"} == {("FILE", "2026-0042"), ("FILE", "2026-0043")}
