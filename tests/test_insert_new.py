"""``reconcile_sql.insert_new``: INSERT … SELECT of the rows whose key is not stored yet, with literal values of
their types. On SQLite it is ``INSERT OR IGNORE`` (no statement journal, see there), which SQLAlchemy compiles
once and takes from its statement cache afterwards: a dialect's upsert (``ON CONFLICT DO NOTHING``) has no cache
key and was compiled on every execution, ~1 ms for each of a first import's batches."""

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
from gateway.store import make_engine, transaction
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


def insert_new_rows(dialect: str, label: str) -> sa.Insert:
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


def test_only_the_rows_not_stored_yet_arrive_with_their_typed_values(conn: Connection) -> None:
    dialect = conn.dialect.name
    ranges = [{"low": 0, "high": 4}, {"low": 2, "high": 6}]
    assert [conn.execute(insert_new_rows(dialect, "copied"), bounds).rowcount for bounds in ranges] == [4, 2]
    rows = stored(conn)
    assert [n for n, _, _ in rows] == [1, 2, 3, 4, 5, 6]
    assert {label for _, label, _ in rows} == {"copied"}
    assert conn.execute(sa.select(target.c.at).limit(1)).scalar_one() == AT


def test_on_sqlite_the_statement_is_compiled_once(sqlite_conn: Connection) -> None:
    conn = sqlite_conn

    def cache_use(statement: sa.Executable, low: int) -> object:
        result = conn.execute(statement, {"low": low, "high": low + 1})
        assert isinstance(result.context, DefaultExecutionContext)
        return result.context.cache_hit

    # Built anew for each execution (a run builds it once): the same shape comes from the cache.
    assert [cache_use(insert_new_rows("sqlite", "once"), low) for low in (0, 1, 2)] == [
        CacheStats.CACHE_MISS,
        CacheStats.CACHE_HIT,
        CacheStats.CACHE_HIT,
    ]
    assert [label for _, label, _ in stored(conn)] == ["once", "once", "once"]


def test_statements_of_two_runs_keep_their_own_values(sqlite_conn: Connection) -> None:
    """Two statements of the same shape with other literal values (two runs) share the compiled form, not the
    values."""
    conn = sqlite_conn
    conn.execute(insert_new_rows("sqlite", "first"), {"low": 0, "high": 2})
    conn.execute(insert_new_rows("sqlite", "second"), {"low": 2, "high": 4})
    assert [label for _, label, _ in stored(conn)] == ["first", "first", "second", "second"]


def test_a_row_of_a_stored_key_is_left_as_it_is(conn: Connection) -> None:
    conn.execute(insert_new_rows(conn.dialect.name, "old"), {"low": 0, "high": 2})
    assert conn.execute(insert_new_rows(conn.dialect.name, "new"), {"low": 0, "high": 3}).rowcount == 1
    assert [label for _, label, _ in stored(conn)] == ["old", "old", "new"]
