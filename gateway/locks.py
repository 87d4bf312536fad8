"""Jobs that run once across instances: PostgreSQL advisory locks (SQLite has one instance, so always ours).

A scheduled import of an administration and the sender's pass each take a session-level advisory lock on a
connection of their own (in autocommit: no transaction stays open while the job runs). An instance that does
not get the lock skips the job: another instance is doing it, and what the job does is re-read from the
database, so the work is neither lost nor done twice. If the lock's connection dies, PostgreSQL drops the lock;
the job's own writes fail with it (the database is away), and the unique keys still guard what it does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.errors import TransientError


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (the same in every instance and version)."""
    return int.from_bytes(hashlib.sha256(f"payt-gateway:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def job_lock(engine: Engine, name: str) -> Iterator[bool]:
    """True while this instance holds the job ``name``; False when another instance holds it now."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise TransientError(f"database unavailable: {exc.orig}") from exc
    try:
        got = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (key,)).scalar())
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        conn.invalidate()
        conn.close()
        raise TransientError(f"database unavailable: {exc.orig}") from exc
    try:
        yield got
    finally:
        try:
            if got:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
        except sa.exc.DBAPIError:
            conn.invalidate()  # the lock went with the broken connection
        finally:
            conn.close()
