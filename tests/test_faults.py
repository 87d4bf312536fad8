"""Database and disk faults: PostgreSQL away while files arrive (a loopback TCP proxy that is cut and restored),
and the data folder's disk full (a small tmpfs). Files wait, the daemon recovers by itself, nothing is lost."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.archive_files import make_zip
from tests.fleet import (
    Drop,
    Instance,
    check_imported_once,
    drop,
    files_under,
    open_items,
    pg_schema,
    query,
    write_config,
)
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

INVALID = b"debtor_code;invoice_number\nX;\n"


def via_proxy(url: str, proxy: TcpProxy) -> str:
    parsed = sa.engine.make_url(url)
    assert parsed.host in ("127.0.0.1", "localhost"), "loopback only"
    return parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def processed_names(gateway: Instance) -> set[str]:
    return {e["file"] for e in gateway.events("file_processed")}


@pytest.mark.postgres
def test_postgresql_away_while_files_arrive(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pg_schema() as url:
        port = sa.engine.make_url(url).port or 5432
        proxy = TcpProxy(port)
        try:
            config = write_config(tmp_path, data, via_proxy(url, proxy), ["ACME", "BETA"])
            gateway = Instance(config, "gateway").started()
            try:
                before = [Drop("ACME", f"before-{i}.csv", open_items("ACME", 5, start=i * 5)) for i in range(2)]
                for item in before:
                    drop(data, item)
                gateway.wait_for(lambda: processed_names(gateway) >= {d.name for d in before})

                proxy.cut()  # PostgreSQL "stops": connections drop, new ones are refused
                during = [Drop("BETA", f"during-{i}.csv", open_items("BETA", 5, start=i * 5)) for i in range(4)]
                for item in during:
                    drop(data, item)
                gateway.wait_for(lambda: gateway.events("file_deferred"), timeout=60)
                time.sleep(3)  # several retries while it is away
                assert gateway.proc.poll() is None, "the daemon keeps running"
                assert not processed_names(gateway) & {d.name for d in during}
                waiting = files_under(data / "claimed") + files_under(data / "inbox" / "BETA")
                assert len(waiting) == len(during), "the files wait, claimed or in the inbox"

                proxy.restore()  # PostgreSQL is back: the daemon finds out by itself
                gateway.wait_for(lambda: processed_names(gateway) >= {d.name for d in during}, timeout=120)
            finally:
                code = gateway.stop()
            assert code == 0
            deferred = gateway.events("file_deferred")
            assert all("database" in e["reason"] for e in deferred), deferred[:2]
            check_imported_once(url, data, [*before, *during])
            outcomes = query(url, "SELECT status, count(*) FROM import_runs GROUP BY status ORDER BY status")
            assert dict(outcomes)["performed"] == len(before) + len(during)
        finally:
            proxy.close()


@contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted on ``folder``. Needs the right to mount (root, as in CI here): fails loudly without."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(folder)], check=False)
    if done.returncode != 0:
        pytest.fail("this test mounts a small tmpfs as the data folder and needs the right to mount (run as root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs as the data folder."""
    with tmpfs(tmp_path / "data", "size=6m") as folder:
        yield folder


def fill(folder: Path) -> Path:
    """Write zeros until the filesystem says it is full; returns the ballast file. Unbuffered: a buffered file
    would raise the same ENOSPC again when it is closed, for the part of the last chunk that did not fit."""
    ballast = folder / "ballast"
    chunk = b"\0" * 65536
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return ballast


@pytest.mark.parametrize("database", ["in the data folder", "elsewhere"])
def test_data_folder_disk_full(tmp_path: Path, small_disk: Path, database: str) -> None:
    """With the SQLite database in the full data folder every file waits (the database cannot write). With the
    database elsewhere, a plain file needs no space in the data folder (claimed, archived: renames) and goes
    through; an archive (unpacking) and a rejected file (its report) wait for space."""
    data = small_disk
    url = f"sqlite:///{data / 'gateway.db'}" if database == "in the data folder" else f"sqlite:///{tmp_path / 'g.db'}"
    config = write_config(tmp_path, data, url, ["ACME", "BETA", "GAMMA"])
    gateway = Instance(config, "gateway").started()
    items = [
        Drop("ACME", "open-items.csv", open_items("ACME", 200)),  # the database (in the data folder) is written
        Drop("BETA", "export.zip", make_zip([("items.csv", open_items("BETA", 50))])),  # unpacking writes
        Drop("GAMMA", "broken.csv", INVALID),  # a rejected file gets its report written beside it
    ]
    try:
        for item in items:  # written while there is space, under temporary names
            (data / "inbox" / item.administration / f".{item.name}.part").write_bytes(item.data)
        ballast = fill(data)
        for item in items:  # complete now: renamed into place on a full disk
            inbox = data / "inbox" / item.administration
            os.rename(inbox / f".{item.name}.part", inbox / item.name)
        waiting = items if database == "in the data folder" else items[1:]
        gateway.wait_for(lambda: len({e["file"] for e in gateway.events("file_deferred")}) == len(waiting), 60)
        time.sleep(2)
        assert gateway.proc.poll() is None, "the daemon keeps running"
        reasons = [e["reason"] for e in gateway.events("file_deferred")]
        assert all("full" in r for r in reasons), reasons
        kept = files_under(data / "claimed") + [p for p in files_under(data / "inbox") if not p.name.startswith(".")]
        assert sorted(p.name.split("__")[-1] for p in kept) == sorted(i.name for i in waiting), "the files wait"

        ballast.unlink()  # space again: processing resumes by itself
        gateway.wait_for(lambda: {e["file"] for e in gateway.events("file_processed")} >= {i.name for i in items})
        gateway.wait_for(lambda: not files_under(data / "claimed"), timeout=60)
    finally:
        code = gateway.stop()
    assert code == 0
    runs: dict[str, Counter[str]] = {}
    for name, status in query(url, "SELECT file_name, status FROM import_runs"):
        runs.setdefault(name, Counter())[status] += 1
    assert runs["open-items.csv"]["performed"] == 1
    assert runs["export.zip"]["performed"] == 1 and runs["export.zip/items.csv"]["performed"] == 1
    assert runs["broken.csv"]["rejected"] == 1
    assert set(runs["broken.csv"]) <= {"rejected", "failed"}, "an attempt the full disk stopped is marked failed"
    assert query(url, "SELECT count(*) FROM invoices")[0][0] == 250
    archived = [p.name for p in files_under(data / "archive")]
    assert sum(n.endswith("_open-items.csv") for n in archived) == 1
    assert sum(n.endswith("_broken.csv.errors.txt") for n in archived) == 1


def fill_inodes(folder: Path) -> list[Path]:
    """Create empty files until the filesystem has no inode left; returns them."""
    made: list[Path] = []
    try:
        while True:
            path = folder / f"inode-{len(made)}"
            path.touch()
            made.append(path)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    return made


def test_starts_on_a_full_data_folder(tmp_path: Path) -> None:
    """Blocks and inodes used up before the daemon starts: its instance lease (a lock file) cannot be created,
    so no file can be claimed. The daemon still runs, says why, and takes the file once there is space (before
    the fix the worker died with exit 70 when the disk filled up before its first claim)."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    item = Drop("ACME", "open-items.csv", open_items("ACME", 20))
    with tmpfs(tmp_path / "data", "size=6m,nr_inodes=200") as data:
        config = write_config(tmp_path, data, url, ["ACME"])
        assert Instance(config, "first start").started().stop() == 0  # lays out the folders, releases its lease
        part = data / "inbox" / "ACME" / f".{item.name}.part"
        part.write_bytes(item.data)
        ballast = fill(data)
        inodes = fill_inodes(data)
        gateway = Instance(config, "gateway").started()
        try:
            gateway.wait_for(lambda: gateway.events("claimed_recovery_deferred"))
            os.rename(part, part.with_name(item.name))
            gateway.wait_for(lambda: gateway.events("file_claim_failed"))
            time.sleep(2)
            assert gateway.proc.poll() is None, "the daemon keeps running"
            assert not processed_names(gateway)
            for path in [ballast, *inodes]:
                path.unlink()
            gateway.wait_for(lambda: processed_names(gateway) == {item.name}, timeout=60)
        finally:
            code = gateway.stop()
    assert code == 0
    assert query(url, "SELECT count(*) FROM invoices")[0][0] == 20
