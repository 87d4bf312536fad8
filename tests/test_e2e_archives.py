"""End to end: archives and done markers through ``payt-gateway run`` as a subprocess."""

from __future__ import annotations

import gzip
import hashlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.archive_files import gzip_bomb, make_zip, open_items, symlink_member, zip_bomb
from tests.test_e2e_crash import big_csv
from tests.test_e2e_daemon import Daemon, cli_json, drop_by_rename, processed, started, write_config

pytestmark = pytest.mark.e2e


MARKED = """
[administrations.MARK]
name = "Marked B.V."
require_done_marker = true
import_mode = "on_delivery"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    yield from started(write_config(tmp_path, extra=MARKED))


def statuses(config: Path) -> tuple[dict[str, str], dict[str, Any]]:
    runs = {r["file"]: r for r in cli_json(config, "imports")}
    return {f: r["status"] for f, r in runs.items()}, runs


def outcome(d: Daemon, name: str) -> dict[str, Any]:
    event: dict[str, Any] = d.wait_for(processed(d, name))[0]
    return event


def test_archives_dropped_into_the_inbox(daemon: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, config = daemon
    inbox = tmp_path / "inbox" / "ACME"
    export = make_zip([("export/", b""), ("export/2026/open-items.csv", open_items("INV1", "INV2"))])
    drop_by_rename(inbox, "export.zip", export)
    assert outcome(d, "export.zip")["outcome"] == "performed"
    member = outcome(d, "export.zip/open-items.csv")
    assert member["outcome"] == "performed" and member["counts"]["invoices_created"] == 2

    hostile = make_zip([("../x.csv", b"1"), symlink_member("link.csv", "/etc/passwd")])
    for name, data in (("bomb.zip", zip_bomb()), ("bomb.csv.gz", gzip_bomb(64)), ("evil.zip", hostile)):
        started = time.monotonic()
        drop_by_rename(inbox, name, data)
        assert outcome(d, name)["outcome"] == "rejected"
        assert time.monotonic() - started < 5

    drop_by_rename(inbox, "next.csv.gz", gzip.compress(open_items("INV2", "INV3")))
    assert outcome(d, "next.csv.gz/next.csv")["outcome"] == "performed", "the daemon keeps going"

    status, runs = statuses(config)
    assert status == {
        "export.zip": "performed",
        "export.zip/open-items.csv": "performed",
        "bomb.zip": "rejected",
        "bomb.csv.gz": "rejected",
        "evil.zip": "rejected",
        "next.csv.gz": "performed",
        "next.csv.gz/next.csv": "performed",
    }
    assert [e["code"] for e in runs["evil.zip"]["errors"]] == ["member_path_traversal", "member_link"]
    assert [e["code"] for e in runs["bomb.csv.gz"]["errors"]] == ["member_too_large"]
    for run in runs.values():
        assert (tmp_path / run["archived_path"]).is_file(), run
    assert (tmp_path / runs["export.zip"]["archived_path"]).read_bytes() == export
    invoices = {(i["number"], i["status"]) for i in cli_json(config, "invoices", "--status", "all")}
    assert invoices == {("INV1", "paid"), ("INV2", "open"), ("INV3", "open")}
    assert not list((tmp_path / "claimed").rglob("*.*")) and not list(inbox.iterdir())
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "inbox" / "x.csv").exists()
    assert d.stop() == 0


def test_done_markers(daemon: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, config = daemon
    inbox = tmp_path / "inbox" / "MARK"

    good = open_items("G1")
    drop_by_rename(inbox, "good.csv", good)
    drop_by_rename(inbox, "good.csv.done", f"{hashlib.sha256(good).hexdigest()}  good.csv\n".encode())
    assert outcome(d, "good.csv")["outcome"] == "performed"

    bad = open_items("B1")
    drop_by_rename(inbox, "bad.csv", bad)
    drop_by_rename(inbox, "bad.csv.done", hashlib.sha256(b"the file as it was sent").hexdigest().encode())
    assert outcome(d, "bad.csv")["outcome"] == "rejected"

    drop_by_rename(inbox, "empty.csv", open_items("E1"))
    drop_by_rename(inbox, "empty.csv.done", b"")
    assert outcome(d, "empty.csv")["outcome"] == "performed"

    late = open_items("L1")
    drop_by_rename(inbox, "late.csv", late)
    time.sleep(1.5)  # well past the quiet period: still waiting for its marker
    assert not processed(d, "late.csv")() and (inbox / "late.csv").exists()
    drop_by_rename(inbox, "late.csv.done", hashlib.sha256(late).hexdigest().encode())
    assert outcome(d, "late.csv")["outcome"] == "performed"

    drop_by_rename(inbox, "alone.csv.done", b"")

    status, runs = statuses(config)
    assert status == {
        "good.csv": "performed",
        "bad.csv": "rejected",
        "empty.csv": "performed",
        "late.csv": "performed",
    }
    assert [e["code"] for e in runs["bad.csv"]["errors"]] == ["done_marker_mismatch"]
    for run in runs.values():
        assert (tmp_path / f"{run['archived_path']}.done").is_file(), "each marker is archived beside its file"
    time.sleep(0.5)
    assert sorted(p.name for p in inbox.iterdir()) == ["alone.csv.done"], "a marker alone is never processed"
    assert not any(e["file"] == "alone.csv.done" for e in d.events("file_processed"))
    assert d.stop() == 0


def test_a_crash_after_unpacking_loses_no_member(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = make_zip([("big.csv", big_csv(60_000))])
    d = Daemon(config)
    d.wait_for(lambda: d.events("inbox_watch_started"))
    drop_by_rename(tmp_path / "inbox" / "ACME", "big.zip", data)
    d.wait_for(lambda: list((tmp_path / "claimed" / "ACME").glob("*big.zip%2Fbig.csv")), timeout=20)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    assert not processed(d, "big.zip/big.csv")(), "killed before the member was imported"

    again = Daemon(config)
    try:
        again.wait_for(lambda: [e for e in processed(again, "big.zip/big.csv")() if e["outcome"] == "performed"], 60)
        again.wait_for(lambda: not list((tmp_path / "claimed").rglob("*.*")), timeout=30)
    finally:
        assert again.stop() == 0
    runs = cli_json(config, "imports")
    members = [r for r in runs if r["file"] == "big.zip/big.csv"]
    assert [r["status"] for r in members if r["status"] != "duplicate"] in (["performed"], ["performed", "failed"])
    assert sum(r["counts"]["invoices_created"] for r in members) == 60_000, "imported exactly once"
    archives = [r for r in runs if r["file"] == "big.zip" and r["status"] == "performed"]
    assert len(archives) == 1 and (tmp_path / archives[0]["archived_path"]).read_bytes() == data
    assert not [p for p in (tmp_path / "unpacking").rglob("*") if p.is_file()], "no partial extraction is left"
