"""Done markers: the pure decisions, the watch-folder intake (real folders, a fake clock), and ``ingest``."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.cli import main
from gateway.config import Administration, Config
from gateway.intake import (
    Arrival,
    Gate,
    MarkerState,
    Readiness,
    SettleTracker,
    Signature,
    decide_gate,
    decide_marker_content,
    is_marker_name,
    is_orphan_marker_due,
    with_owner,
)
from gateway.watcher import Claimed, Intake, Refused
from tests.archive_files import open_items
from tests.test_archive_ingest import Cli, write_config

DATA = open_items("INV1")
SHA = hashlib.sha256(DATA).hexdigest()
OTHER = hashlib.sha256(b"something else").hexdigest()
R, W = Readiness.READY, Readiness.WAIT


# -- pure decisions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "file", "marker", "gate"),
    [
        (False, W, MarkerState.MISSING, Gate.WAIT),
        (False, R, MarkerState.MISSING, Gate.CLAIM),
        (False, R, MarkerState.NOT_REGULAR, Gate.CLAIM),  # not required: the marker is not looked at
        (True, W, MarkerState.READY, Gate.WAIT),  # the settle rules still apply to the file
        (True, R, MarkerState.MISSING, Gate.WAIT_FOR_MARKER),
        (True, R, MarkerState.SETTLING, Gate.WAIT_FOR_MARKER),  # ... and to its marker
        (True, R, MarkerState.READY, Gate.CLAIM),
        (True, R, MarkerState.NOT_REGULAR, Gate.REFUSE),
    ],
)
def test_decide_gate(required: bool, file: Readiness, marker: MarkerState, gate: Gate) -> None:
    assert decide_gate(required, file, marker) is gate


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", None),
        (b"\n  \r\n", None),
        (SHA.encode(), None),
        (SHA.upper().encode() + b"\n", None),
        (f"{SHA}  open-items.csv\n".encode(), None),  # sha256sum
        (f"SHA256 (open-items.csv) = {SHA}\n".encode(), None),  # shasum -a 256 --tag / BSD
        (f"{SHA}\n{SHA}\n".encode(), None),  # the same digest twice is still one
        (OTHER.encode(), "done_marker_mismatch"),
        (f"{OTHER}  open-items.csv".encode(), "done_marker_mismatch"),
        (SHA[:-1].encode(), "done_marker_invalid"),  # 63 digits: cut off while being written
        (SHA.encode() + b"0", "done_marker_invalid"),  # 65 digits
        (b"done", "done_marker_invalid"),
        (f"{SHA} {OTHER}".encode(), "done_marker_invalid"),
        (b"\xff\xfe" + SHA.encode("utf-16-le"), "done_marker_invalid"),
        (SHA.encode() + b" " * 5000, "done_marker_invalid"),  # larger than a marker can be
    ],
)
def test_decide_marker_content(content: bytes, code: str | None) -> None:
    found = decide_marker_content(content, SHA)
    assert (found[0] if found else None) == code


def test_a_mismatch_names_both_digests() -> None:
    found = decide_marker_content(OTHER.encode(), SHA)
    assert found is not None and SHA in found[1] and OTHER in found[1] and "corrupt" in found[1]


def test_marker_names_and_orphans() -> None:
    assert is_marker_name("x.csv.done") and is_marker_name("x.done")
    assert not is_marker_name(".done") and not is_marker_name("x.csv") and not is_marker_name("x.donex")
    assert not is_orphan_marker_due(100.0, 699.9) and is_orphan_marker_due(100.0, 700.0)


def test_a_parked_file_no_longer_sets_a_deadline_until_it_changes() -> None:
    tracker = SettleTracker(settle_seconds=1.0)
    path, sig = PurePosixPath("/in/A/x.csv"), Signature(1, 1)
    tracker.observe(path, sig, Arrival.RENAMED, now=5.0)
    tracker.park(path)
    assert tracker.next_deadline() is None
    tracker.observe(path, sig, Arrival.SEEN, now=6.0)  # nothing new: still parked
    assert tracker.next_deadline() is None
    tracker.observe(path, Signature(2, 2), Arrival.SEEN, now=7.0)
    assert tracker.next_deadline() == 8.0


# -- the intake on real folders, with a fake clock ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_config(data_dir: Path, settle: float = 1.0) -> Config:
    return Config(
        data_dir=data_dir,
        database_url="sqlite://",
        settle_seconds=settle,
        sweep_seconds=3600.0,
        administrations={
            "MARK": Administration(code="MARK", name="Marked", require_done_marker=True),
            "PLAIN": Administration(code="PLAIN", name="Plain"),
        },
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Intake, FakeClock, Path]:
    clock = FakeClock()
    intake = Intake(make_config(tmp_path), clock, orphan_marker_seconds=60.0)  # not started: sweeps only
    intake.take_ready()
    return intake, clock, tmp_path / "inbox" / "MARK"


def look(intake: Intake, clock: FakeClock, seconds: float) -> list[Claimed | Refused]:
    clock.now += seconds
    intake.sweep()
    return intake.take_ready()


def test_a_file_is_taken_only_with_its_marker_which_is_claimed_beside_it(setup: Any) -> None:
    intake, clock, inbox = setup
    (inbox / "open-items.csv").write_bytes(DATA)
    assert look(intake, clock, 0) == []
    assert look(intake, clock, 5) == [], "complete, but no marker yet"
    (inbox / "open-items.csv.done").write_text(SHA + "\n")
    assert look(intake, clock, 0) == [], "the marker is new: it must be quiet too"
    [item] = look(intake, clock, 1.0)
    assert isinstance(item, Claimed) and item.original_name == "open-items.csv"
    assert item.marker == item.path.with_name(item.path.name + ".done")
    assert item.marker.read_text() == SHA + "\n" and item.path.read_bytes() == DATA
    assert list(inbox.iterdir()) == [], "the marker is consumed with its file, never left to re-trigger"


def test_a_file_waiting_for_its_marker_does_not_wake_the_worker(tmp_path: Path) -> None:
    intake = Intake(make_config(tmp_path, settle=0.0))
    intake.take_ready()
    (tmp_path / "inbox" / "MARK" / "open-items.csv").write_bytes(DATA)
    intake.sweep()
    assert intake.take_ready() == []
    intake.wait(0)  # consumes the wake-up the sweep asked for
    started = time.monotonic()
    intake.wait(0.5)
    assert time.monotonic() - started >= 0.45, "a parked file sets no deadline (no busy loop)"


def test_the_marker_must_be_quiet_before_the_file_is_taken(setup: Any) -> None:
    intake, clock, inbox = setup
    (inbox / "a.csv").write_bytes(DATA)
    marker = inbox / "a.csv.done"
    marker.write_text(SHA[:20])
    assert look(intake, clock, 2) == []
    with marker.open("a") as f:
        f.write(SHA[20:])  # still being written: the quiet period restarts
    assert look(intake, clock, 0.5) == []
    [item] = look(intake, clock, 1.0)
    assert isinstance(item, Claimed) and item.marker is not None and item.marker.read_text() == SHA


def test_a_symlinked_marker_refuses_the_file(setup: Any, tmp_path: Path) -> None:
    intake, clock, inbox = setup
    (inbox / "a.csv").write_bytes(DATA)
    os.symlink(tmp_path / "elsewhere", inbox / "a.csv.done")
    look(intake, clock, 0)
    [item] = look(intake, clock, 2)
    assert isinstance(item, Refused) and "done marker" in item.reason
    assert item.marker is not None and item.marker.is_symlink()


def test_a_marker_without_its_file_stays_and_is_reported_once_after_a_while(setup: Any) -> None:
    intake, clock, inbox = setup
    marker = inbox / "lost.csv.done"
    marker.write_text("")
    with capture_logs() as logs:
        assert look(intake, clock, 0) == []
        assert look(intake, clock, 59) == []
        assert look(intake, clock, 2) == []
        assert look(intake, clock, 100) == []
    assert [e["event"] for e in logs if e["event"].startswith("done_marker")] == ["done_marker_without_file"]
    assert marker.exists(), "never processed, never deleted"


def test_without_the_setting_markers_are_left_alone_and_files_taken_as_usual(setup: Any) -> None:
    intake, clock, _ = setup
    plain = intake._inbox / "PLAIN"
    (plain / "a.csv").write_bytes(DATA)
    (plain / "a.csv.done").write_text(OTHER)
    with capture_logs() as logs:
        look(intake, clock, 0)
        [item] = look(intake, clock, 2)
    assert isinstance(item, Claimed) and item.marker is None
    assert (plain / "a.csv.done").exists()
    assert [e["event"] for e in logs if e["event"].startswith("done_marker")] == ["done_marker_ignored"]


def test_recovery_pairs_markers_and_takes_one_a_crash_left_in_the_inbox(setup: Any) -> None:
    intake, clock, inbox = setup
    for name in ("a.csv", "b.csv"):
        (inbox / name).write_bytes(DATA)
        (inbox / f"{name}.done").write_text(SHA)
    look(intake, clock, 0)
    taken = look(intake, clock, 2)
    assert sorted(i.original_name for i in taken) == ["a.csv", "b.csv"]
    # A crash between the two renames of b.csv: its marker is back in the inbox, its file claimed alone.
    b = next(i for i in taken if i.original_name == "b.csv")
    assert b.marker is not None
    os.rename(b.marker, inbox / "b.csv.done")
    orphan = b.path.with_name(b.path.name.replace("b.csv", "c.csv") + ".done")
    orphan.write_text("")
    intake.stop()  # the crash: its lease goes with it, and the next intake takes its files over

    restarted = Intake(make_config(inbox.parent.parent))
    recovered = restarted.recover_claimed()
    assert sorted((i.original_name, i.marker is not None) for i in recovered) == [("a.csv", True), ("b.csv", True)]
    assert not (inbox / "b.csv.done").exists()
    left = orphan.with_name(with_owner(orphan.name, restarted._lease.token()))
    assert left.exists(), "a claimed marker without its file is reported and left (taken over with the rest)"
    restarted.stop()


# -- ingest -------------------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    write_config(tmp_path)
    return Cli(tmp_path, capsys)


def ingest_with_marker(cli: Cli, name: str, data: bytes, marker: str | None, admin: str = "MARK", code: int = 0) -> Any:
    if marker is not None:
        (cli.root / "drop").mkdir(exist_ok=True)
        (cli.root / "drop" / f"{name}.done").write_text(marker)
    return cli.ingest(name, data, code=code, admin=admin)


@pytest.mark.parametrize(
    "marker", ["", SHA, f"{SHA}  open-items.csv\n"], ids=["empty", "bare digest", "sha256sum line"]
)
def test_ingest_with_a_good_marker_archives_it_beside_the_file(cli: Cli, marker: str) -> None:
    run = ingest_with_marker(cli, "open-items.csv", DATA, marker)
    assert run["status"] == "performed"
    assert (cli.root / f"{run['archived_path']}.done").read_text() == marker
    assert cli.files("claimed") == []


def test_ingest_with_a_bad_checksum_rejects_the_file_as_corrupt(cli: Cli) -> None:
    run = ingest_with_marker(cli, "open-items.csv", DATA, OTHER, code=1)
    assert run["status"] == "rejected" and [e["code"] for e in run["errors"]] == ["done_marker_mismatch"]
    report = (cli.root / f"{run['archived_path']}.errors.txt").read_text("utf-8")
    assert "corrupt" in report and SHA in report and OTHER in report
    assert (cli.root / f"{run['archived_path']}.done").read_text() == OTHER
    assert cli("invoices") == []
    # The same content with a good marker afterwards is not a duplicate of the rejected delivery.
    assert ingest_with_marker(cli, "open-items.csv", DATA, SHA)["status"] == "performed"


def test_a_corrupt_file_is_rejected_even_when_its_content_was_seen_before(cli: Cli) -> None:
    assert ingest_with_marker(cli, "a.csv", DATA, SHA)["status"] == "performed"
    run = ingest_with_marker(cli, "b.csv", DATA, OTHER, code=1)
    assert [e["code"] for e in run["errors"]] == ["done_marker_mismatch"]


def test_ingest_refuses_a_missing_marker_and_the_marker_itself(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "open-items.csv").write_bytes(DATA)
    (drop / "x.csv.done").write_text("")
    config = str(tmp_path / "gateway.toml")
    capsys.readouterr()
    assert main(["--config", config, "ingest", str(drop / "open-items.csv"), "--administration", "MARK"]) == 1
    assert "requires done markers and open-items.csv.done is not beside the file" in capsys.readouterr().err
    assert main(["--config", config, "ingest", str(drop / "x.csv.done"), "--administration", "ACME"]) == 1
    assert "a done marker is not data" in capsys.readouterr().err
    assert cli("imports") == []


def test_ingest_verifies_a_marker_beside_the_file_even_when_not_required(cli: Cli) -> None:
    run = ingest_with_marker(cli, "open-items.csv", DATA, OTHER, admin="ACME", code=1)
    assert [e["code"] for e in run["errors"]] == ["done_marker_mismatch"]
