"""Ownership of claimed files between instances (leases), and the one-instance rule of SQLite."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.instances import InstanceLease, ProcessLease
from gateway.intake import claimed_owner, with_owner
from gateway.watcher import Claimed, Intake
from tests.fleet import Drop as Item
from tests.fleet import Instance, drop, files_under, open_items, pg_schema, query, write_config


def make_config(root: Path) -> Path:
    return write_config(root, root, "sqlite:///gateway.db", ["ACME"], settle=0.0)


def claim_one(intake: Intake, root: Path, name: str) -> Claimed:
    (root / "inbox" / "ACME").mkdir(parents=True, exist_ok=True)
    (root / "inbox" / "ACME" / name).write_bytes(b"content of " + name.encode())
    intake.sweep()
    [taken] = intake.take_ready()
    assert isinstance(taken, Claimed)
    return taken


def test_a_live_instances_claimed_file_is_left_alone_and_a_dead_ones_is_taken_over(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path))
    first = Intake(config)
    taken = claim_one(first, tmp_path, "a.csv")
    second = Intake(config)
    assert second.recover_claimed() == [], "the first instance is alive: its file is its own work"
    assert taken.path.exists()

    first.stop()  # its lease goes (as when the process dies)
    [recovered] = second.recover_claimed()
    token = second._lease.token()
    assert recovered.path == taken.path.with_name(with_owner(taken.path.name, token))
    assert recovered.path.read_bytes() == b"content of a.csv"
    assert not taken.path.exists()
    assert second.recover_claimed(own=False) == [], "a file is handed out once"
    assert [p.name for p in (tmp_path / "instances").iterdir()] == [f"{token}.lock"], "the dead lease is gone"
    second.stop()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gateway.instances import InstanceLease
    lease = InstanceLease.acquire(Path(sys.argv[1]))
    print(lease.token, flush=True)
    time.sleep(600)
    """
)


def test_a_lease_dies_with_its_process_even_by_sigkill(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        token = holder.stdout.readline().strip()
        config = load_config(make_config(tmp_path))
        folder = tmp_path / "claimed" / "ACME"
        folder.mkdir(parents=True)
        name = f"20260303T090000000000Z-{token}__left.csv"
        (folder / name).write_bytes(b"x")
        intake = Intake(config)
        assert intake.recover_claimed() == []
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        [recovered] = intake.recover_claimed()
        assert claimed_owner(recovered.path.name) == intake._lease.token()
        intake.stop()
    finally:
        holder.kill()
        holder.wait()


def test_tokens_are_never_shared(tmp_path: Path) -> None:
    leases = [InstanceLease.acquire(tmp_path) for _ in range(50)]
    assert len({lease.token for lease in leases}) == 50
    for lease in leases:
        lease.release()
    assert list((tmp_path / "instances").iterdir()) == []
    process = ProcessLease(tmp_path)
    assert not process.owns("00000000")
    token = process.token()
    assert process.owns(token) and process.token() == token
    process.release()


@pytest.mark.e2e
def test_a_second_daemon_on_one_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = Instance(config, "first").started()
    try:
        second = Instance(config, "second")
        assert second.wait(60) == 78
        assert "another gateway is already running on the SQLite database" in second.output()
        assert "use PostgreSQL" in second.output()
    finally:
        assert first.stop() == 0
    again = Instance(config, "again").started()  # the lock went with the first
    assert again.stop() == 0


@pytest.mark.e2e
@pytest.mark.postgres
def test_an_instance_starting_does_not_take_the_file_another_is_importing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pg_schema() as url:
        one = write_config(tmp_path / "one", data, url, ["ACME"])
        two = write_config(tmp_path / "two", data, url, ["ACME"])
        first = Instance(one, "first").started()
        second: Instance | None = None
        try:
            drop(data, Item("ACME", "big.csv", open_items("ACME", 60_000)))
            first.wait_for(lambda: first.events("file_claimed"))
            second = Instance(two, "second").started()  # its start-up recovery runs while the import is going on
            [done] = first.wait_for(lambda: first.events("file_processed"), timeout=180)
            [up] = second.events("gateway_started")
            assert up["timestamp"] < done["timestamp"], "the second instance was up while the import ran"
            assert second.events("claimed_files_recovered") == []
            assert second.events("file_processed") == []
        finally:
            assert first.stop() == 0
            if second is not None:
                assert second.stop() == 0
        assert query(url, "SELECT status, count(*) FROM import_runs GROUP BY status") == [("performed", 1)]
        assert files_under(data / "claimed") == []
        assert len(files_under(data / "archive")) == 1
