"""Pure intake decisions, table-driven: no filesystem, no clock."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from gateway.intake import (
    NAME_MAX_BYTES,
    Arrival,
    Location,
    Observation,
    Place,
    Readiness,
    SettleTracker,
    Signature,
    decide_readiness,
    decide_refusal,
    is_temporary_name,
    locate,
    make_claimed_name,
    merge_arrival,
    next_observation,
    parse_claimed_name,
    ready_at,
)

SIG = Signature(size=10, mtime_ns=1_000)
GROWN = Signature(size=20, mtime_ns=2_000)
TOUCHED = Signature(size=10, mtime_ns=3_000)


@pytest.mark.parametrize(
    ("name", "temporary"),
    [
        ("open_items.csv", False),
        ("open_items.csv.part", True),
        ("open_items.CSV.PART", True),
        ("upload.tmp", True),
        ("upload.TMP", True),
        ("winscp.filepart", True),
        ("x.FilePart", True),
        (".hidden.csv", True),
        (".", True),
        ("~lock.csv", True),
        ("~$report.xlsx", True),
        ("part", False),
        ("report.partial", False),
        ("tmp.csv", False),
        ("invoice.pdf", False),
        ("archive.zip", False),
        ("name.done", False),
        ("a~b.csv", False),
        ("a.b.csv", False),
    ],
)
def test_is_temporary_name(name: str, temporary: bool) -> None:
    assert is_temporary_name(name) is temporary


@pytest.mark.parametrize(
    ("observation", "current", "now", "expected"),
    [
        # renamed into place: at once, whatever the time
        (Observation(SIG, 100.0, Arrival.RENAMED), SIG, 100.0, Readiness.READY),
        # written: only after settle_seconds (2.0) of quiet since first seen
        (Observation(SIG, 100.0, Arrival.WRITTEN), SIG, 100.0, Readiness.WAIT),
        (Observation(SIG, 100.0, Arrival.WRITTEN), SIG, 101.999, Readiness.WAIT),
        (Observation(SIG, 100.0, Arrival.WRITTEN), SIG, 102.0, Readiness.READY),
        (Observation(SIG, 100.0, Arrival.WRITTEN), SIG, 500.0, Readiness.READY),
        # found by a sweep: the same quiet period
        (Observation(SIG, 100.0, Arrival.SEEN), SIG, 101.0, Readiness.WAIT),
        (Observation(SIG, 100.0, Arrival.SEEN), SIG, 102.5, Readiness.READY),
        # the file changed since it was observed: never ready, even when renamed or long quiet
        (Observation(SIG, 100.0, Arrival.WRITTEN), GROWN, 500.0, Readiness.WAIT),
        (Observation(SIG, 100.0, Arrival.WRITTEN), TOUCHED, 500.0, Readiness.WAIT),
        (Observation(SIG, 100.0, Arrival.RENAMED), GROWN, 100.0, Readiness.WAIT),
    ],
)
def test_decide_readiness(observation: Observation, current: Signature, now: float, expected: Readiness) -> None:
    assert decide_readiness(observation, current, now, settle_seconds=2.0) is expected


@pytest.mark.parametrize(
    ("previous", "signature", "arrival", "expected"),
    [
        (None, SIG, Arrival.SEEN, Observation(SIG, 50.0, Arrival.SEEN)),
        (None, SIG, Arrival.WRITTEN, Observation(SIG, 50.0, Arrival.WRITTEN)),
        (None, SIG, Arrival.RENAMED, Observation(SIG, 50.0, Arrival.RENAMED)),
        # unchanged and only seen again: the quiet period keeps running
        (Observation(SIG, 10.0, Arrival.WRITTEN), SIG, Arrival.SEEN, Observation(SIG, 10.0, Arrival.WRITTEN)),
        (Observation(SIG, 10.0, Arrival.RENAMED), SIG, Arrival.SEEN, Observation(SIG, 10.0, Arrival.RENAMED)),
        # a change restarts it (mtime alone, or size)
        (Observation(SIG, 10.0, Arrival.SEEN), TOUCHED, Arrival.SEEN, Observation(TOUCHED, 50.0, Arrival.WRITTEN)),
        (Observation(SIG, 10.0, Arrival.SEEN), GROWN, Arrival.SEEN, Observation(GROWN, 50.0, Arrival.WRITTEN)),
        # write activity restarts it even when size and mtime look the same (coarse timestamps)
        (Observation(SIG, 10.0, Arrival.SEEN), SIG, Arrival.WRITTEN, Observation(SIG, 50.0, Arrival.WRITTEN)),
        # written after the rename: no longer complete at once
        (Observation(SIG, 10.0, Arrival.RENAMED), SIG, Arrival.WRITTEN, Observation(SIG, 50.0, Arrival.WRITTEN)),
        (Observation(SIG, 10.0, Arrival.RENAMED), GROWN, Arrival.SEEN, Observation(GROWN, 50.0, Arrival.WRITTEN)),
        # something renamed over a file being written: complete at once
        (Observation(SIG, 10.0, Arrival.WRITTEN), GROWN, Arrival.RENAMED, Observation(GROWN, 50.0, Arrival.RENAMED)),
    ],
)
def test_next_observation(
    previous: Observation | None, signature: Signature, arrival: Arrival, expected: Observation
) -> None:
    assert next_observation(previous, signature, arrival, now=50.0) == expected


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        (None, Arrival.SEEN, Arrival.SEEN),
        (None, Arrival.RENAMED, Arrival.RENAMED),
        (Arrival.RENAMED, Arrival.SEEN, Arrival.RENAMED),
        (Arrival.WRITTEN, Arrival.SEEN, Arrival.WRITTEN),
        (Arrival.RENAMED, Arrival.WRITTEN, Arrival.WRITTEN),
        (Arrival.WRITTEN, Arrival.RENAMED, Arrival.RENAMED),
        (Arrival.SEEN, Arrival.WRITTEN, Arrival.WRITTEN),
    ],
)
def test_merge_arrival(earlier: Arrival | None, later: Arrival, expected: Arrival) -> None:
    assert merge_arrival(earlier, later) is expected


@pytest.mark.parametrize(
    ("mode", "nlink", "reason"),
    [
        (stat.S_IFREG | 0o644, 1, None),
        (stat.S_IFREG | 0o000, 1, None),
        (stat.S_IFREG | 0o644, 2, "hard link"),
        (stat.S_IFREG | 0o644, 7, "hard link"),
        (stat.S_IFLNK | 0o777, 1, "symlink"),
        (stat.S_IFLNK | 0o777, 2, "symlink"),
        (stat.S_IFIFO | 0o644, 1, "not a regular file"),
        (stat.S_IFSOCK | 0o755, 1, "not a regular file"),
        (stat.S_IFCHR | 0o666, 1, "not a regular file"),
        (stat.S_IFBLK | 0o660, 1, "not a regular file"),
        (stat.S_IFDIR | 0o755, 2, "not a regular file"),
    ],
)
def test_decide_refusal(mode: int, nlink: int, reason: str | None) -> None:
    assert decide_refusal(mode, nlink) == reason


INBOX = PurePosixPath("/data/inbox")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/data/inbox/ACME/open.csv", Location(Place.CANDIDATE, "ACME", "open.csv")),
        ("/data/inbox/ACME/open.csv.part", Location(Place.TEMPORARY, "ACME", "open.csv.part")),
        ("/data/inbox/ACME/.upload", Location(Place.TEMPORARY, "ACME", ".upload")),
        ("/data/inbox/acme/open.csv", Location(Place.UNKNOWN_ADMINISTRATION, "acme", "open.csv")),
        ("/data/inbox/OTHER/open.csv", Location(Place.UNKNOWN_ADMINISTRATION, "OTHER", "open.csv")),
        ("/data/inbox/ACME", Location(Place.TOP_LEVEL, name="ACME")),
        ("/data/inbox/stray.csv", Location(Place.TOP_LEVEL, name="stray.csv")),
        ("/data/inbox/ACME/sub/open.csv", Location(Place.NESTED, "ACME", "open.csv")),
        ("/data/inbox", Location(Place.OUTSIDE)),
        ("/data/claimed/ACME/x.csv", Location(Place.OUTSIDE)),
        ("/data/inbox/ACME/../../etc/passwd", Location(Place.OUTSIDE)),
    ],
)
def test_locate(path: str, expected: Location) -> None:
    assert locate(INBOX, PurePosixPath(path), {"ACME", "BETA"}) == expected


def test_tracker_waits_for_quiet_and_any_change_restarts_it() -> None:
    tracker = SettleTracker(settle_seconds=2.0)
    p = PurePosixPath("/in/ACME/a.csv")
    assert tracker.decide(p, SIG, 0.0) is Readiness.WAIT  # never observed
    tracker.observe(p, SIG, Arrival.WRITTEN, now=0.0)
    assert tracker.next_deadline() == 2.0
    tracker.observe(p, SIG, Arrival.SEEN, now=1.5)  # a sweep sees it again: no reset
    assert tracker.decide(p, SIG, 1.9) is Readiness.WAIT
    tracker.observe(p, GROWN, Arrival.SEEN, now=1.9)  # it grew: the period restarts at 1.9
    assert tracker.decide(p, GROWN, 2.5) is Readiness.WAIT
    assert tracker.next_deadline() == pytest.approx(3.9)
    assert tracker.decide(p, GROWN, 3.9) is Readiness.READY
    tracker.restart(p, now=4.0)  # a claim failed: wait a whole period again
    assert tracker.decide(p, GROWN, 5.0) is Readiness.WAIT
    assert tracker.decide(p, GROWN, 6.0) is Readiness.READY
    tracker.forget(p)
    assert tracker.paths() == []
    assert tracker.next_deadline() is None


def test_tracker_renamed_file_is_ready_at_once_and_deadline_is_earliest() -> None:
    tracker = SettleTracker(settle_seconds=2.0)
    slow, fast = PurePosixPath("/in/A/slow.csv"), PurePosixPath("/in/A/fast.csv")
    tracker.observe(slow, SIG, Arrival.WRITTEN, now=10.0)
    tracker.observe(fast, SIG, Arrival.RENAMED, now=11.0)
    assert tracker.decide(fast, SIG, 11.0) is Readiness.READY
    assert tracker.next_deadline() == 11.0
    assert ready_at(Observation(SIG, 10.0, Arrival.WRITTEN), 2.0) == 12.0
    tracker.forget(fast)
    assert tracker.next_deadline() == 12.0


RECEIVED = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


@pytest.mark.parametrize(
    "original",
    ["open_items.csv", "a__b__c.csv", "facturen 2025 (€).xml", "noextension", ".weird", "x" * 215],
)
def test_claimed_name_round_trip(original: str) -> None:
    name = make_claimed_name(RECEIVED, "0a1b2c3d", original)
    assert name == f"20250304T050607890123Z-0a1b2c3d__{original}"
    assert parse_claimed_name(name) == (RECEIVED, original)


def test_claimed_name_fits_name_max_and_keeps_the_extension() -> None:
    original = "é" * 200 + ".csv"  # 404 bytes in UTF-8
    name = make_claimed_name(RECEIVED, "0a1b2c3d", original)
    assert len(os.fsencode(name + ".done")) <= NAME_MAX_BYTES, "room for the done marker's claimed name"
    assert name.endswith("éé.csv")
    parsed = parse_claimed_name(name)
    assert parsed is not None and parsed[0] == RECEIVED


@pytest.mark.parametrize(
    "original",
    ["export.zip/open-items.csv", "100%.csv", "a%2Fb.csv", "x.gz/x%25.csv", "%", "a.zip/" + "é" * 200 + ".pdf"],
)
def test_claimed_names_of_archive_members_round_trip(original: str) -> None:
    name = make_claimed_name(RECEIVED, "0a1b2c3d", original)
    assert "/" not in name and len(os.fsencode(name)) <= NAME_MAX_BYTES - len(".done")
    parsed = parse_claimed_name(name)
    assert parsed is not None
    if len(original) < 100:
        assert parsed == (RECEIVED, original)
    else:  # shortened, but still a member of the same archive with the same extension
        assert parsed[1].startswith("a.zip/éé") and parsed[1].endswith(".pdf")


def test_claimed_name_is_utc() -> None:
    from zoneinfo import ZoneInfo

    local = RECEIVED.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert make_claimed_name(local, "0a1b2c3d", "x.csv") == make_claimed_name(RECEIVED, "0a1b2c3d", "x.csv")


@pytest.mark.parametrize(
    "name",
    [
        "open_items.csv",
        "20250304T050607890123Z__x.csv",
        "20250304T050607890123Z-0A1B2C3D__x.csv",
        "20251399T050607890123Z-0a1b2c3d__x.csv",
        "20250304T050607890123Z-0a1b2c3d__",
    ],
)
def test_parse_claimed_name_rejects_other_names(name: str) -> None:
    assert parse_claimed_name(name) is None


def test_make_claimed_name_rejects_a_bad_token() -> None:
    with pytest.raises(ValueError, match="token"):
        make_claimed_name(RECEIVED, "../../x", "a.csv")
