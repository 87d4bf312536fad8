"""Crashes: the daemon killed mid-import, a crash between commit and archive move, a worker that dies."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.intake import make_claimed_name
from tests.test_e2e_daemon import Daemon, cli_json, drop_by_rename, processed, write_config

pytestmark = pytest.mark.e2e

HEADER = (
    "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)


def big_csv(rows: int) -> bytes:
    body = "".join(
        f"D{i // 5};Debtor {i // 5};Straat {i % 90 + 1};1234 AB;Utrecht;INV{i:07d};2026-02-01;2026-03-01;"
        f"{i % 900 + 10}.50;{i % 900 + 10}.50\n"
        for i in range(rows)
    )
    return (HEADER + body).encode("utf-8")


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_sigkill_mid_import_then_restart_imports_exactly_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = big_csv(150_000)
    d = Daemon(config)
    d.wait_for(lambda: d.events("inbox_watch_started"))
    drop_by_rename(tmp_path / "inbox" / "ACME", "big.csv", data)
    # Wait until the file is claimed and its run is in progress, then kill without warning.
    d.wait_for(lambda: files_under(tmp_path / "claimed"), timeout=10)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    assert not d.events("file_processed"), "the kill came before the import finished"
    assert len(files_under(tmp_path / "claimed")) == 1, "the claimed file survives the crash"

    again = Daemon(config)
    try:
        event = again.wait_for(processed(again, "big.csv"), timeout=60)[0]
        assert event["outcome"] == "performed"
        assert event["counts"]["invoices_created"] == 150_000
    finally:
        assert again.stop() == 0
    runs = cli_json(config, "imports")
    assert sorted(r["status"] for r in runs) in (["failed", "performed"], ["performed"])
    interrupted = [r for r in runs if r["status"] == "failed"]
    assert all("interrupted" in r["reason"] for r in interrupted)
    assert files_under(tmp_path / "claimed") == []
    archived = files_under(tmp_path / "archive")
    assert len(archived) == 1 and archived[0].read_bytes() == data, "archived exactly once"
    with sqlite3.connect(tmp_path / "gateway.db") as db:  # the stored state itself (listing 150k is slow)
        numbers = db.execute("SELECT count(*), count(DISTINCT number) FROM invoices WHERE status = 'open'").fetchone()
    assert numbers == (150_000, 150_000)
    assert len(cli_json(config, "invoices", "--limit", "5")) == 5


def test_crash_after_commit_completes_the_archive_move(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    source = tmp_path / "open-items.csv"
    source.write_bytes(big_csv(10))
    first = cli_json(config, "ingest", str(source), "--administration", "ACME")
    archived = tmp_path / first["archived_path"]
    # The state a crash between the commit and the archive move leaves: the run is committed, the file is
    # still in the private folder.
    claimed = tmp_path / "claimed" / "ACME" / make_claimed_name(datetime.now(UTC), secrets.token_hex(4), source.name)
    os.rename(archived, claimed)
    d = Daemon(config)
    try:
        d.wait_for(lambda: d.events("archive_completed"))
        d.wait_for(lambda: archived.exists())
    finally:
        assert d.stop() == 0
    assert [r["status"] for r in cli_json(config, "imports")] == ["performed"], "no new run, no duplicate"
    assert files_under(tmp_path / "claimed") == []
    assert archived.read_bytes() == source.read_bytes()


def test_an_unexpected_worker_death_exits_non_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    d = Daemon(config)
    d.wait_for(lambda: d.events("inbox_watch_started"))
    # Damage the database behind the daemon's back: the next file meets an error nobody expected.
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.execute("DROP TABLE files")
    drop_by_rename(tmp_path / "inbox" / "ACME", "x.csv", big_csv(3))
    assert d.proc.wait(timeout=15) == 70
    assert d.events("worker_died")
    assert len(files_under(tmp_path / "claimed")) == 1, "the file is kept for the next start"
