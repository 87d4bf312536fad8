"""Who owns a claimed file: instance leases on the shared data folder, and the one-instance rule of SQLite.

Several gateways may share one data folder (and one PostgreSQL database). Each process that claims files
holds a **lease**: an exclusive ``flock`` on ``data_dir/instances/<token>.lock``, taken when it starts and held
until it exits. The kernel drops the lock when the process dies, however it dies (SIGKILL included); on NFSv4
the server drops it when the client's lease expires. A claimed file carries its owner's token in its name
(``gateway.intake.make_claimed_name``), so:

- a file whose owner still holds its lock is that owner's work: nobody else touches it;
- a file whose owner's lock is free (or gone) was left by a dead process: the first instance to rename it to
  its own token (an atomic rename: exactly one wins) takes it over and processes it.

The database keeps the second line of defence: a file's identity (administration, SHA-256) is unique, and the
import of a content is re-checked under a lock of its administration (``gateway.pipeline``).

SQLite cannot be shared by several gateways (one writer, a local file): ``run`` takes an exclusive lock beside
the database file and a second ``run`` on the same database refuses to start (exit 78).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy.engine import make_url

from gateway.errors import ConfigError

INSTANCES_FOLDER = "instances"
TOKEN = re.compile(r"[0-9a-f]{8}")


def instances_dir(data_dir: Path) -> Path:
    return data_dir / INSTANCES_FOLDER


def _lock_path(data_dir: Path, token: str) -> Path:
    if not TOKEN.fullmatch(token):
        raise ValueError(f"not an instance token: {token!r}")
    return instances_dir(data_dir) / f"{token}.lock"


class InstanceLease:
    """This process's lease: held from ``acquire`` until ``release`` or the process's death."""

    def __init__(self, data_dir: Path, token: str, fd: int):
        self.data_dir = data_dir
        self.token = token
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> InstanceLease:
        folder = instances_dir(data_dir)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            token = secrets.token_hex(4)
            try:  # O_EXCL: a token is never shared, not even with a dead process whose lock file is still there
                fd = os.open(_lock_path(data_dir, token), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
            with suppress(OSError):  # for people; the lock is the lease: a full disk leaves the file empty
                os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            return cls(data_dir, token, fd)

    def release(self) -> None:
        """At a clean stop: the lock file goes (nothing of ours is left claimed that others should take)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _lock_path(self.data_dir, self.token).unlink(missing_ok=True)
        finally:
            os.close(fd)


@contextmanager
def dead_lease(data_dir: Path, token: str) -> Iterator[bool]:
    """Hold the lease ``token`` if its process is dead (True), so that one instance at a time takes its files
    over; False when it is alive. Afterwards the dead lease's lock file is removed."""
    path = _lock_path(data_dir, token)
    instances_dir(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # a lease of an older version has no file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


class ProcessLease:
    """The process's lease, taken on first use: a command that never claims a file takes none."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._lease: InstanceLease | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._lease is None:
                self._lease = InstanceLease.acquire(self.data_dir)
            return self._lease.token

    def owns(self, token: str) -> bool:
        with self._lock:
            return self._lease is not None and self._lease.token == token

    def release(self) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


class SingleInstance:
    """An exclusive lock beside a SQLite database: one ``run`` per database file."""

    def __init__(self, database: Path):
        self.database = database
        self.path = database.with_name(database.name + ".instance.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                [
                    f"gateway.database_url: another gateway is already running on the SQLite database {self.database} "
                    f"(host and pid: {holder}); SQLite supports one instance: stop the other one, or use PostgreSQL "
                    "to run several instances"
                ]
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
