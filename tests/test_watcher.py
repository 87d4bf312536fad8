"""The watch-folder intake on real folders with the real watchdog observer (no mocks of our code)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import Administration, Config
from gateway.intake import parse_claimed_name, with_owner
from gateway.watcher import Claimed, ClaimedFileError, Intake, Refused, open_claimed

pytestmark = pytest.mark.timeout(30)

Item = Claimed | Refused


def make_config(data_dir: Path, settle: float = 0.3, sweep: float = 3600.0) -> Config:
    return Config(
        data_dir=data_dir,
        database_url="sqlite://",
        settle_seconds=settle,
        sweep_seconds=sweep,
        administrations={
            "ACME": Administration(code="ACME", name="Acme"),
            "BETA": Administration(code="BETA", name="Beta"),
        },
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def running() -> Iterator[Callable[..., Intake]]:
    """Start intakes and always stop them; fail if a watchdog thread outlives the test."""
    before = set(threading.enumerate())
    started: list[Intake] = []

    def start(config: Config) -> Intake:
        intake = Intake(config)
        intake.start()
        started.append(intake)
        return intake

    yield start
    for intake in started:
        intake.stop()
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leaked == []


def pump(intake: Intake, seconds: float, until: Callable[[list[Item]], bool] | None = None) -> list[Item]:
    """Run the owner's worker loop for ``seconds`` (or until ``until`` holds); return what was taken."""
    taken: list[Item] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        intake.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        taken += intake.take_ready()
        if until is not None and until(taken):
            break
    return taken


def inbox(config: Config, code: str = "ACME") -> Path:
    return config.inbox_dir / code


def test_start_creates_folders_and_stop_joins_threads(tmp_path: Path, running: Callable[..., Intake]) -> None:
    config = make_config(tmp_path)
    before = threading.active_count()
    intake = running(config)
    assert inbox(config, "ACME").is_dir() and inbox(config, "BETA").is_dir()
    assert config.claimed_dir.is_dir()
    assert threading.active_count() > before  # the observer really runs
    intake.stop()
    assert threading.active_count() == before


def test_part_renamed_into_place_is_claimed_at_once(tmp_path: Path, running: Callable[..., Intake]) -> None:
    config = make_config(tmp_path, settle=2.0)
    intake = running(config)
    part = inbox(config) / "open_items.csv.part"
    part.write_bytes(b"debtor_code;amount\n1;10\n")
    assert pump(intake, 0.4) == []  # a temporary name is never taken
    t0 = time.monotonic()
    os.rename(part, inbox(config) / "open_items.csv")
    taken = pump(intake, 1.5, until=bool)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0
    assert len(taken) == 1 and isinstance(taken[0], Claimed)
    item = taken[0]
    assert (item.administration, item.original_name) == ("ACME", "open_items.csv")
    assert item.path.parent == config.claimed_dir / "ACME"
    assert item.path.name.endswith("__open_items.csv")
    assert item.path.read_bytes() == b"debtor_code;amount\n1;10\n"
    assert item.received_at.tzinfo is UTC
    assert abs((datetime.now(UTC) - item.received_at).total_seconds()) < 5
    assert not (inbox(config) / "open_items.csv").exists()
    assert not part.exists()


def test_file_moved_in_from_outside_the_inbox_is_claimed_at_once(
    tmp_path: Path, running: Callable[..., Intake]
) -> None:
    config = make_config(tmp_path, settle=2.0)
    intake = running(config)
    staged = tmp_path / "staging.csv"
    staged.write_bytes(b"x")
    t0 = time.monotonic()
    os.rename(staged, inbox(config, "BETA") / "moved.csv")
    taken = pump(intake, 1.5, until=bool)
    assert time.monotonic() - t0 < 1.0
    assert [(i.administration, i.original_name, type(i)) for i in taken] == [("BETA", "moved.csv", Claimed)]


def test_slow_writer_is_claimed_only_after_a_quiet_period(tmp_path: Path, running: Callable[..., Intake]) -> None:
    settle = 0.5
    config = make_config(tmp_path, settle=settle)
    intake = running(config)
    target = inbox(config) / "slow.csv"
    taken: list[Item] = []
    with open(target, "wb") as f:  # written under its final name, in pieces, pausing less than settle
        for piece in (b"header\n", b"row 1\n", b"row 2\n", b"row 3\n"):
            f.write(piece)
            f.flush()
            last_write = time.monotonic()
            taken += pump(intake, 0.3)
    assert taken == []  # 1.2 s after the first byte, but never quiet for 0.5 s
    closed = time.monotonic()
    taken += pump(intake, settle * 0.6)
    assert taken == []  # closing is not enough: the quiet period has not passed
    taken += pump(intake, 2.0, until=bool)
    claimed_at = time.monotonic()
    assert len(taken) == 1 and isinstance(taken[0], Claimed)
    assert taken[0].path.read_bytes() == b"header\nrow 1\nrow 2\nrow 3\n"
    assert claimed_at - last_write >= settle
    assert claimed_at - closed < settle + 1.0


def test_quiet_period_counts_from_when_the_gateway_saw_the_file_not_its_mtime(
    tmp_path: Path, running: Callable[..., Intake]
) -> None:
    config = make_config(tmp_path, settle=0.6)
    early = inbox(config) / "early.csv"
    early.parent.mkdir(parents=True)
    early.write_bytes(b"already here")
    os.utime(early, (time.time() - 3600, time.time() - 3600))  # an hour old
    intake = running(config)  # the startup sweep finds it
    t0 = time.monotonic()
    assert pump(intake, 0.4) == []
    taken = pump(intake, 2.0, until=bool)
    assert time.monotonic() - t0 >= 0.6
    assert [i.original_name for i in taken] == ["early.csv"]


def test_temporary_names_are_never_claimed(tmp_path: Path, running: Callable[..., Intake]) -> None:
    config = make_config(tmp_path, settle=0.3)
    intake = running(config)
    folder = inbox(config)
    names = ["a.part", "b.tmp", "c.filepart", ".hidden.csv", "~lock.csv", "D.CSV.PART", "e.csv.Tmp"]
    for name in names:
        (folder / name).write_bytes(b"partial")
    (folder / "f.part").write_bytes(b"partial")
    os.rename(folder / "f.part", folder / "f.tmp")  # a rename between temporary names
    os.rename(folder / "a.part", folder / ".a.hidden")
    assert pump(intake, 1.0) == []
    intake.sweep()
    assert pump(intake, 0.6) == []
    expected = sorted([*(n for n in names if n != "a.part"), "f.tmp", ".a.hidden"])
    assert sorted(p.name for p in folder.iterdir()) == expected
    assert list((config.claimed_dir / "ACME").glob("*")) == []


def test_symlink_hard_link_and_fifo_are_refused_without_being_followed(
    tmp_path: Path, running: Callable[..., Intake]
) -> None:
    config = make_config(tmp_path, settle=0.3)
    intake = running(config)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not read")
    other = tmp_path / "other.csv"
    other.write_bytes(b"linked twice")
    folder = inbox(config)
    os.symlink(secret, folder / "link.csv")
    os.link(other, folder / "hard.csv")
    os.mkfifo(folder / "pipe.csv")
    taken = pump(intake, 3.0, until=lambda t: len(t) == 3)
    by_name = {i.original_name: i for i in taken}
    assert set(by_name) == {"link.csv", "hard.csv", "pipe.csv"}
    assert all(isinstance(i, Refused) for i in taken)
    reasons = {n: i.reason for n, i in by_name.items() if isinstance(i, Refused)}
    assert reasons == {"link.csv": "symlink", "hard.csv": "hard link", "pipe.csv": "not a regular file"}
    link = by_name["link.csv"].path
    assert link.parent == config.claimed_dir / "ACME" and link.is_symlink()
    assert os.readlink(link) == str(secret)  # the link itself was moved, not its target
    assert secret.read_bytes() == b"do not read" and not secret.is_symlink()
    assert other.read_bytes() == b"linked twice" and other.stat().st_nlink == 2
    assert by_name["pipe.csv"].path.is_fifo()
    assert list(folder.iterdir()) == []


def test_directory_in_an_administration_folder_is_left_alone_and_logged_once(
    tmp_path: Path, running: Callable[..., Intake]
) -> None:
    config = make_config(tmp_path, settle=0.2)
    intake = running(config)
    with capture_logs() as logs:
        sub = inbox(config) / "subdir"
        sub.mkdir()
        (sub / "inner.csv").write_bytes(b"not ours")
        taken = pump(intake, 0.6)
        intake.sweep()
        taken += pump(intake, 0.5)
    assert taken == []
    assert (sub / "inner.csv").read_bytes() == b"not ours"
    assert [e["path"] for e in logs if e["event"] == "inbox_directory_ignored"] == [str(sub)]


def test_unknown_administration_is_left_alone_and_logged_once_per_file(
    tmp_path: Path, running: Callable[..., Intake]
) -> None:
    config = make_config(tmp_path, settle=0.2)
    intake = running(config)
    with capture_logs() as logs:
        unknown = config.inbox_dir / "NOPE"
        unknown.mkdir()
        first = unknown / "open.csv"
        first.write_bytes(b"1")
        taken = pump(intake, 0.5)
        with open(first, "ab") as f:
            f.write(b"more")  # more events for the same file
        (unknown / "second.csv").write_bytes(b"2")
        (unknown / "third.part").write_bytes(b"temporary: not reported")
        taken += pump(intake, 0.5)
        intake.sweep()
        taken += pump(intake, 0.4)
    assert taken == []
    warnings = [e for e in logs if e["event"] == "inbox_unknown_administration"]
    assert sorted(e["path"] for e in warnings) == [str(first), str(unknown / "second.csv")]
    assert all(e["log_level"] == "warning" and e["administration"] == "NOPE" for e in warnings)
    assert first.read_bytes() == b"1more"
    assert not (config.claimed_dir / "NOPE").exists()


def test_sweep_finds_files_that_arrived_while_not_watching(tmp_path: Path, running: Callable[..., Intake]) -> None:
    config = make_config(tmp_path, settle=0.2, sweep=3600.0)
    intake = running(config)
    intake.stop()  # no events from here on
    (inbox(config) / "offline.csv").write_bytes(b"arrived while not watching")
    assert pump(intake, 0.5) == []  # no event, and the periodic sweep is an hour away
    intake.sweep()
    taken = pump(intake, 1.5, until=bool)
    assert [(i.original_name, type(i)) for i in taken] == [("offline.csv", Claimed)]


def test_periodic_sweep_and_change_reset_with_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    config = make_config(tmp_path, settle=2.0, sweep=60.0)
    intake = Intake(config, clock)  # not started: no observer, only sweeps
    assert intake.take_ready() == []  # the first call sweeps (empty inbox)
    target = inbox(config) / "late.csv"
    target.write_bytes(b"a")
    clock.now += 30
    assert intake.take_ready() == []  # not seen: no events and no sweep due yet
    clock.now += 30
    assert intake.take_ready() == []  # the periodic sweep sees it now: quiet period starts
    clock.now += 1.9
    assert intake.take_ready() == []
    with open(target, "ab") as f:
        f.write(b"b")  # it changes: the period restarts at the next look
    clock.now += 0.2
    assert intake.take_ready() == []
    clock.now += 1.9
    assert intake.take_ready() == []
    clock.now += 0.1
    taken = intake.take_ready()
    assert [(i.original_name, type(i)) for i in taken] == [("late.csv", Claimed)]
    assert taken[0].path.read_bytes() == b"ab"


def test_file_that_vanishes_before_its_claim_is_forgotten(tmp_path: Path) -> None:
    clock = FakeClock()
    config = make_config(tmp_path, settle=1.0)
    intake = Intake(config, clock)
    intake.take_ready()
    target = inbox(config) / "gone.csv"
    target.write_bytes(b"x")
    intake.sweep()
    assert intake.take_ready() == []
    target.unlink()
    clock.now += 5
    assert intake.take_ready() == []
    target.write_bytes(b"back again")  # a new file: a new quiet period
    intake.sweep()
    assert intake.take_ready() == []
    clock.now += 1
    assert [i.original_name for i in intake.take_ready()] == ["gone.csv"]


def test_recover_claimed_returns_leftovers(tmp_path: Path, running: Callable[..., Intake]) -> None:
    config = make_config(tmp_path, settle=0.2)
    intake = running(config)
    part = inbox(config, "BETA") / "x.part"
    part.write_bytes(b"claimed before the crash")
    os.rename(part, inbox(config, "BETA") / "rapport 2025__v2.csv")
    os.symlink(tmp_path / "nowhere", inbox(config) / "evil.csv")
    taken = pump(intake, 2.0, until=lambda t: len(t) == 2)
    assert len(taken) == 2
    intake.stop()
    (config.claimed_dir / "ACME" / "not-made-by-intake.csv").write_bytes(b"ignored")

    restarted = Intake(config)  # a new process: nothing in memory; the stopped one's files are taken over
    recovered = restarted.recover_claimed()
    token = restarted._lease.token()
    handed = [replace(i, path=i.path.with_name(with_owner(i.path.name, token))) for i in taken]
    assert sorted(recovered, key=lambda i: i.original_name) == sorted(handed, key=lambda i: i.original_name)
    restarted.stop()
    claimed = next(i for i in recovered if isinstance(i, Claimed))
    assert claimed.original_name == "rapport 2025__v2.csv"
    assert claimed.path.read_bytes() == b"claimed before the crash"
    refused = next(i for i in recovered if isinstance(i, Refused))
    assert (refused.original_name, refused.reason) == ("evil.csv", "symlink")


def test_open_claimed_reads_a_regular_file_and_refuses_the_rest(tmp_path: Path) -> None:
    regular = tmp_path / "regular.csv"
    regular.write_bytes(b"content")
    with open_claimed(regular) as f:
        assert f.read() == b"content"
    os.symlink(regular, tmp_path / "link.csv")
    (tmp_path / "first").write_bytes(b"two names")
    os.link(tmp_path / "first", tmp_path / "second")
    os.mkfifo(tmp_path / "pipe")
    cases = {"link.csv": "symlink", "second": "hard link", "pipe": "not a regular file", "absent": "missing"}
    for name, reason in cases.items():
        with pytest.raises(ClaimedFileError) as info:
            open_claimed(tmp_path / name)  # a FIFO would block here if it were opened
        assert info.value.reason == reason
        assert isinstance(info.value, OSError) and reason in str(info.value.strerror)


def test_wake_ends_a_wait_at_once(tmp_path: Path) -> None:
    intake = Intake(make_config(tmp_path))
    timer = threading.Timer(0.1, intake.wake)
    timer.start()
    t0 = time.monotonic()
    intake.wait(5.0)
    timer.join()
    assert time.monotonic() - t0 < 2.0


def test_claimed_names_carry_the_receipt_time(tmp_path: Path, running: Callable[..., Intake]) -> None:
    config = make_config(tmp_path, settle=0.2)
    intake = running(config)
    (inbox(config) / "a.part").write_bytes(b"a")
    os.rename(inbox(config) / "a.part", inbox(config) / "a.csv")
    taken = pump(intake, 1.5, until=bool)
    assert len(taken) == 1 and isinstance(taken[0], Claimed)
    assert parse_claimed_name(taken[0].path.name) == (taken[0].received_at, "a.csv")
