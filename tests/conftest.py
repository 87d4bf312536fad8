"""Shared fixtures: a real SQLite file and a real PostgreSQL schema per test, a fixed clock, a data folder."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.store import make_engine, migrate

PG_URL = os.environ.get("PAYT_GATEWAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_engine(schema: str) -> Engine:
    """An engine on a fresh schema of the machine's PostgreSQL. A missing server fails the test loudly."""
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for this test and is not reachable at {PG_URL}: {exc.orig}")
    finally:
        admin.dispose()
    return make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}")


def drop_postgres_schema(schema: str) -> None:
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """The migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
        migrate(eng)
        yield eng
        eng.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    eng = postgres_engine(schema)
    try:
        migrate(eng)
        yield eng
    finally:
        eng.dispose()
        drop_postgres_schema(schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database URL for a configuration file: the default SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield "sqlite:///gateway.db"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    postgres_engine(schema).dispose()
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        drop_postgres_schema(schema)


@pytest.fixture
def fixed_now() -> datetime:
    return datetime(2026, 3, 4, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """A test that leaves a thread of ours running fails (DESIGN.md conventions)."""
    before = set(threading.enumerate())
    yield
    deadline = 50
    leaked: list[threading.Thread] = []
    for _ in range(deadline):
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        if not leaked:
            return
        threading.Event().wait(0.1)
    pytest.fail(f"test leaked threads: {[t.name for t in leaked]}")


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process routes logging to the stderr of the moment: pytest's capture, closed after
    the test. The root logger gets its handlers back, so that a later test's thread that logs (aiosmtpd's,
    say) does not write into a closed stream ("--- Logging error ---" in the output)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
