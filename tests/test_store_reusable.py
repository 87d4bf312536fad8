"""``store.reusable``: an upsert that SQLAlchemy would compile on every execution, compiled once on SQLite, writes
exactly what the statement itself writes (its own bound values with their types) and is taken from the cache after
the first execution. On PostgreSQL it is the statement itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import CacheStats

from gateway.reconcile_sql import insert_new
from gateway.store import make_engine, reusable, transaction
from gateway.tables import UTCDateTime

probe_metadata = sa.MetaData()
source = sa.Table("reuse_source", probe_metadata, sa.Column("n", sa.Integer, nullable=False), prefixes=["TEMPORARY"])
target = sa.Table(
    "reuse_target",
    probe_metadata,
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("label", sa.String(20), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    prefixes=["TEMPORARY"],
)
# An aware time in another zone: the column's type converts it to UTC (and to naive UTC on SQLite).
AT = datetime(2026, 11, 22, 9, 30, tzinfo=timezone(timedelta(hours=1)))


def upsert(dialect: str, label: str) -> sa.Insert:
    """Copy the source rows between ``:low`` and ``:high`` that are not in the target yet, with literal values."""
    select = sa.select(source.c.n, sa.literal(label), sa.literal(AT, UTCDateTime)).where(
        source.c.n > sa.bindparam("low"), source.c.n <= sa.bindparam("high")
    )
    return insert_new(dialect, target, ["n", "label", "at"], select, ["n"])


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with probe_tables(engine) as conn:
        yield conn


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[Connection]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        with probe_tables(engine) as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def probe_tables(engine: Engine) -> Iterator[Connection]:
    with transaction(engine) as conn:
        probe_metadata.create_all(conn)
        conn.execute(source.insert(), [{"n": n} for n in range(1, 11)])
        yield conn


def stored(conn: Connection) -> list[tuple[object, ...]]:
    """The rows as the database holds them (the time as text: its stored form, not only its value)."""
    return [tuple(r) for r in conn.exec_driver_sql("SELECT n, label, CAST(at AS TEXT) FROM reuse_target ORDER BY n")]


def test_the_text_writes_what_the_statement_writes(conn: Connection) -> None:
    dialect = conn.dialect.name
    ranges = [{"low": 0, "high": 4}, {"low": 2, "high": 6}]
    counts = [conn.execute(upsert(dialect, "copied"), bounds).rowcount for bounds in ranges]
    by_statement = stored(conn)
    conn.execute(target.delete())

    text = reusable(upsert(dialect, "copied"), conn.dialect)
    assert [conn.execute(text, bounds).rowcount for bounds in ranges] == counts == [4, 2]
    assert stored(conn) == by_statement
    assert [n for n, _, _ in by_statement] == [1, 2, 3, 4, 5, 6]
    assert {label for _, label, _ in by_statement} == {"copied"}
    assert conn.execute(sa.select(target.c.at).limit(1)).scalar_one() == AT


def test_the_text_is_compiled_once(sqlite_conn: Connection) -> None:
    conn = sqlite_conn
    dialect = conn.dialect.name

    def cache_use(statement: sa.Executable, low: int) -> object:
        result = conn.execute(statement, {"low": low, "high": low + 1})
        assert isinstance(result.context, DefaultExecutionContext)
        return result.context.cache_hit

    statement = upsert(dialect, "once")
    # Why the helper exists: SQLAlchemy has no cache key for a dialect's upsert.
    assert [cache_use(statement, low) for low in (0, 1)] == [CacheStats.NO_CACHE_KEY] * 2
    text = reusable(upsert(dialect, "twice"), conn.dialect)
    assert [cache_use(text, low) for low in (2, 3, 4)] == [
        CacheStats.CACHE_MISS,
        CacheStats.CACHE_HIT,
        CacheStats.CACHE_HIT,
    ]
    assert [label for _, label, _ in stored(conn)] == ["once", "once", "twice", "twice", "twice"]


def test_a_statement_compiled_for_another_run_keeps_its_own_values(sqlite_conn: Connection) -> None:
    conn = sqlite_conn
    """Two texts of the same shape with other bound values (two runs) do not share those values in the cache."""
    dialect = conn.dialect.name
    conn.execute(reusable(upsert(dialect, "first"), conn.dialect), {"low": 0, "high": 2})
    conn.execute(reusable(upsert(dialect, "second"), conn.dialect), {"low": 2, "high": 4})
    assert [label for _, label, _ in stored(conn)] == ["first", "first", "second", "second"]


def test_on_postgresql_the_statement_is_itself(engine: Engine) -> None:
    statement = upsert(engine.dialect.name, "any")
    assert (reusable(statement, engine.dialect) is statement) == (engine.dialect.name != "sqlite")


def test_a_statement_rendered_at_execution_is_refused(sqlite_conn: Connection) -> None:
    """An expanding IN list is rendered from the values of each execution; compiled once it would be wrong."""
    select = sa.select(source.c.n, sa.literal("in"), sa.literal(AT, UTCDateTime)).where(
        source.c.n.in_(sa.bindparam("numbers", expanding=True))
    )
    statement = insert_new("sqlite", target, ["n", "label", "at"], select, ["n"])
    with pytest.raises(ValueError, match="expanding IN"):
        reusable(statement, sqlite_conn.dialect)
