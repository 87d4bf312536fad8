"""Exactly once, with real processes: a sender killed while handing a message over, then restarted; two
``send-due`` at the same instant (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_server import Behaviour, Recorder, start
from tests.test_send_smtp import snapshot

pytestmark = pytest.mark.e2e


def config_file(folder: Path, database_url: str, sender: str) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        f"""
[gateway]
data_dir = "."
database_url = "{database_url}"
[sender]
from_address = "facturen@acme.example"
{sender}
[administrations.ACME]
name = "Acme B.V."
""",
        "utf-8",
    )
    return path


def command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "--config", str(config), "--json", *args]


def run(config: Path, *args: str) -> Any:
    done = subprocess.run(command(config, *args), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_killed_while_handing_over_then_restarted(tmp_path: Path) -> None:
    handler = Recorder(Behaviour(hang_data={"hang@example.org"}))
    controller = start(handler)
    try:
        smtp = (
            f'transport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {controller.port}\n'
            "smtp_starttls = false\ntimeout_seconds = 60"
        )
        config = config_file(tmp_path, "sqlite:///gateway.db", smtp)
        mails = {"INV1": "first@example.org", "INV2": "hang@example.org", "INV3": "third@example.org"}
        run(config, "--now", "2026-03-04T15:01", "ingest", str(snapshot(tmp_path / "a.csv", mails)),
            "--administration", "ACME")  # fmt: skip
        proc = subprocess.Popen(command(config, "--now", "2026-03-04T16:30", "send-due"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            assert handler.hanging.wait(30), "the sender never reached the hanging DATA"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert [r for r, _ in handler.accepted] == ["first@example.org"]
        # The sender restarts (the same instant): the message in hand becomes unknown, never resent; the claim
        # that was never handed over is given back and sent.
        handler.behaviour.hang_data.clear()
        report = run(config, "--now", "2026-03-04T16:30", "send-due")
        assert (report["recovered_unknown"], report["sent"]) == (1, 1)
        assert sorted(r for r, _ in handler.accepted) == ["first@example.org", "third@example.org"]
        rows = {r["invoice"]: r for r in run(config, "--now", "2026-03-04T16:31", "outbox") if r["id"]}
        assert rows["INV2"]["status"] == "unknown" and "may or may not" in rows["INV2"]["reason"]
        assert [r["status"] for r in (rows["INV1"], rows["INV3"])] == ["sent", "sent"]
        assert run(config, "--now", "2026-03-04T17:00", "send-due")["sent"] == 0, "unknown is never resent"
        invoices = {i["number"]: i for i in run(config, "--now", "2026-03-04T17:00", "invoices")}
        assert invoices["INV2"]["blocked"].startswith("delivery unknown")
        # The operator looked in the mail server's log: it did not go out. Retry it.
        resolved = run(config, "--now", "2026-03-04T17:05", "outbox", "resolve", str(rows["INV2"]["id"]), "--retry")
        assert resolved == {"id": rows["INV2"]["id"], "previous": "unknown", "status": "scheduled"}
        assert run(config, "--now", "2026-03-04T17:30", "send-due")["sent"] == 1
        assert sorted(r for r, _ in handler.accepted).count("hang@example.org") == 1
        # --sent on a delivery that is not unknown is refused.
        done = subprocess.run(command(config, "outbox", "resolve", str(rows["INV1"]["id"]), "--sent"),
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 1 and "is sent" in done.stderr
    finally:
        controller.stop()


def test_two_passes_at_the_same_instant_send_once(tmp_path: Path, database_url: str) -> None:
    config = config_file(tmp_path, database_url, 'transport = "outbox"\nbatch_size = 20')
    mails = {f"INV{i:03d}": f"d{i}@example.org" for i in range(300)}
    run(config, "--now", "2026-03-04T15:01", "ingest", str(snapshot(tmp_path / "a.csv", mails)),
        "--administration", "ACME")  # fmt: skip
    procs = [
        subprocess.Popen(
            command(config, "--now", "2026-03-04T16:30", "send-due"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        reports.append(json.loads(out))
    assert sum(r["sent"] for r in reports) == 300, reports
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 300
    assert len({f.name.split("_", 1)[1] for f in files}) == 300, "one file per invoice"
    sent = run(config, "outbox", "--status", "sent", "--limit", "0")
    assert len(sent) == 300 and len({r["invoice"] for r in sent}) == 300


def test_a_pass_waits_for_nothing_when_nothing_is_due(tmp_path: Path) -> None:
    config = config_file(tmp_path, "sqlite:///gateway.db", 'transport = "outbox"')
    started = time.monotonic()
    report = run(config, "--now", "2026-03-04T16:30", "send-due")
    assert report["sent"] == 0 and time.monotonic() - started < 30
