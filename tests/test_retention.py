"""Retention: the cut-off decision, the `retention [--dry-run]` command with --now on both databases, and the
daemon's pass at start-up."""

from __future__ import annotations

import json
import signal
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from gateway.config import RetentionSettings
from gateway.retention import cutoff, decide_purge, folder_day
from tests.test_e2e_daemon import HEADER, INVALID, VALID, Daemon, cli, cli_json


@pytest.mark.parametrize(
    ("now", "years", "days", "keep_from"),
    [
        (datetime(2026, 3, 4, 14, 0, tzinfo=UTC), 7, 0, date(2019, 3, 4)),
        (datetime(2028, 2, 29, 23, 59, tzinfo=UTC), 7, 0, date(2021, 2, 28)),  # leap day minus whole years
        (datetime(2026, 3, 4, 0, 30, tzinfo=UTC), 0, 10, date(2026, 2, 22)),
        (datetime(2026, 3, 3, 23, 30, tzinfo=UTC), 7, 1, date(2019, 3, 2)),  # the day is the UTC day
    ],
)
def test_cutoff(now: datetime, years: int, days: int, keep_from: date) -> None:
    assert cutoff(RetentionSettings(archive_years=years, archive_days=days), now) == keep_from


def test_decide_purge_only_whole_days_before_the_cutoff_and_never_undated_files() -> None:
    entries = [
        (PurePosixPath("ACME/2019/03/03/1_aa_a.csv"), 10),
        (PurePosixPath("ACME/rejected/2019/03/03/2_bb_b.csv.errors.json"), 5),
        (PurePosixPath("ACME/2019/03/04/3_cc_c.csv"), 7),  # the cut-off day itself stays
        (PurePosixPath("ACME/notes.txt"), 1),
        (PurePosixPath("ACME/2019/13/01/4_dd_d.csv"), 1),  # not a date: left alone
    ]
    plan = decide_purge(entries, date(2019, 3, 4))
    assert plan.files == [
        PurePosixPath("archive/ACME/2019/03/03/1_aa_a.csv"),
        PurePosixPath("archive/ACME/rejected/2019/03/03/2_bb_b.csv.errors.json"),
    ]
    assert plan.bytes == 15
    assert plan.undated == [PurePosixPath("ACME/notes.txt"), PurePosixPath("ACME/2019/13/01/4_dd_d.csv")]
    assert folder_day(PurePosixPath("ACME/superseded/2020/01/31/x")) == date(2020, 1, 31)


def write_config(root: Path, database_url: str) -> Path:
    config = root / "gateway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "."
database_url = "{database_url}"

[administrations.ACME]
name = "Acme B.V."
import_mode = "on_delivery"
""",
        "utf-8",
    )
    return config


def ingest(config: Path, now: str, name: str, data: bytes) -> dict[str, Any]:
    source = config.parent / name
    source.write_bytes(data)
    done = cli(config, "--now", now, "--json", "ingest", str(source), "--administration", "ACME")
    assert done.returncode in (0, 1), done.stderr
    run: dict[str, Any] = json.loads(done.stdout)
    return run


def test_retention_command_with_now(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    old = ingest(config, "2018-03-04T10:00:00+00:00", "old.csv", VALID)
    held = ingest(config, "2018-03-04T10:30:00+00:00", "empty.csv", HEADER.encode())  # the empty-file guard
    old_bad = ingest(config, "2018-03-04T11:00:00+00:00", "old-bad.csv", INVALID.replace(b"debiteurnummer", b"x"))
    young = ingest(config, "2024-01-01T10:00:00+00:00", "young.csv", INVALID)
    assert held["status"] == "held"
    assert old["archived_path"].startswith("archive/ACME/2018/03/04/")
    assert old_bad["status"] == "rejected" and "/rejected/2018/03/04/" in old_bad["archived_path"]
    old_files = [tmp_path / old["archived_path"], tmp_path / old_bad["archived_path"]]
    old_files += [Path(f"{tmp_path / old_bad['archived_path']}.errors.{ext}") for ext in ("json", "txt")]
    assert all(p.is_file() for p in old_files)

    # dry run: says what would go, touches nothing
    plan = cli_json(config, "--now", "2026-03-04T12:00:00+00:00", "retention", "--dry-run")
    assert plan["dry_run"] is True and plan["kept_from"] == "2019-03-04"
    assert sorted(plan["files"]) == sorted(str(p.relative_to(tmp_path)) for p in old_files)
    assert plan["runs"] == 2
    assert all(p.is_file() for p in old_files)

    # the cut-off day itself is never purged: 7 years after 2018-03-04 exactly
    kept = cli_json(config, "--now", "2025-03-04T23:59:00+00:00", "retention")
    assert kept["files"] == [] and all(p.is_file() for p in old_files)

    gone = cli_json(config, "--now", "2025-03-05T00:00:00+00:00", "retention")
    assert len(gone["files"]) == 4 and gone["runs"] == 2
    assert not any(p.exists() for p in old_files)
    assert not (tmp_path / "archive" / "ACME" / "rejected").exists()  # empty folders go too
    assert (tmp_path / young["archived_path"]).is_file()
    assert (tmp_path / held["archived_path"]).is_file()  # waits for release or discard, however old

    # the runs stay, without a path, saying where their file went
    runs = cli_json(config, "--now", "2026-03-04T12:00:00+00:00", "imports", "--days", "4000")
    by_id = {r["run_id"]: r for r in runs}
    for run in (old, old_bad):
        after = by_id[run["run_id"]]
        assert after["archived_path"] is None
        assert after["status"] == run["status"]
        codes = [n["code"] for n in after["notices"]]
        assert "archive_purged" in codes
    assert by_id[young["run_id"]]["archived_path"] == young["archived_path"]
    retry = cli(config, "rejected", "retry", str(old_bad["run_id"]))
    assert retry.returncode == 1 and "its archived file is gone" in retry.stderr
    again = cli_json(config, "--now", "2026-03-04T12:00:00+00:00", "retention")
    assert again["files"] == [] and again["runs"] == 0


@pytest.mark.e2e
def test_daemon_purges_at_start_and_logs_what_it_removed(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:///gateway.db")
    ancient = tmp_path / "archive" / "ACME" / "2010" / "01" / "01" / "1_ab_old.csv"
    today = datetime.now(UTC)
    fresh = tmp_path / "archive" / "ACME" / f"{today:%Y}" / f"{today:%m}" / f"{today:%d}" / "2_cd_new.csv"
    for path in (ancient, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(VALID)
    d = Daemon(config)
    try:
        purged = d.wait_for(lambda: d.events("archive_purged"))
        assert [e["folder"] for e in purged] == ["archive/ACME/2010/01/01"]
        assert d.wait_for(lambda: d.events("retention_finished"))[0]["files"] == 1
        assert not ancient.exists() and fresh.is_file()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
