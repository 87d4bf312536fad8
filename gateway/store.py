"""The database: engine creation (SQLite in WAL mode or PostgreSQL), migrations, and bulk writes.

SQLAlchemy and driver errors are translated here into our own errors (DESIGN.md rule 7).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from importlib import resources
from itertools import chain
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from gateway.errors import ConfigError, TransientError
from gateway.locks import lock_key
from gateway.tables import administrations

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Parameters per statement of a multi-row insert: the lowest limit SQLite builds have had (999 before 3.32).
SQLITE_VARIABLES = 999
SQLITE_PAGE_SIZE = 16384

# The newest migration (``gateway/migrations/versions``; a test checks it against alembic's head). A database
# there needs no migration, and then alembic is not even imported: ~9 MB and ~0.08 s of every start.
SCHEMA_HEAD = "0009"

# libpq settings of every PostgreSQL connection, unless the URL gives its own. A server that does not answer
# fails a connect after 10 s (instead of the kernel's ~2 min of SYN retries, or for ever behind a proxy that
# accepts and stays silent); a connection whose peer has gone is found dead by TCP keepalives in about 2 min
# (60 s idle, then 6 probes 10 s apart), where a query could otherwise wait for the kernel's ~15 min.
PG_CONNECT_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 60,
    "keepalives_interval": 10,
    "keepalives_count": 6,
}

# Explicit adapters: the sqlite3 module's default ones are deprecated (Python 3.12).
sqlite3.register_adapter(date, date.isoformat)
sqlite3.register_adapter(datetime, lambda v: v.isoformat(" ", "microseconds"))
# None and bool bind as they would without these (NULL, 1 and 0), only faster. For a parameter that is not an
# exact int, float or str, the driver looks for an adapter and, finding none, asks the type for ``__adapt__``,
# which raises and formats an AttributeError that it then discards: ~1 µs for every None and bool, and the stage
# rows of a 1M-row import bind several million of them. An empty dict's ``get`` returns None for None without a
# Python frame. (200k stage-like rows: executemany 0.70 -> 0.44 s.)
_NO_ADAPTER: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NO_ADAPTER.get)
sqlite3.register_adapter(bool, int)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    # Pages of 16 KiB for a new database (a no-op for an existing one, whose page size is fixed). A 1M-row
    # first import commits in about half the time (the WAL checkpoint copies a quarter as many pages).
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Page caches of 16 MB for the database and for the temporary (stage) tables. With SQLite's default 2 MB
    # for the temporary ones, every join of reconcile over a million staged rows went through the temp file
    # (a 1M-row re-import took ~2.5x the CPU). Measured on 1M rows (idle machine): 16 MB each imports as fast
    # as 64 MB each (first import 17.9-18.6 s against 18.8 s, re-import 16.3-17.6 s against 17.8 s) in 133 MB
    # instead of 242 MB; 8 MB each made the re-import slower (20.0 s).
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.execute("PRAGMA temp.cache_size=-16384")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take the write lock at BEGIN (no lock upgrade that could fail); readers never block in WAL."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def make_engine(url: str) -> Engine:
    """Build the engine for ``url``. SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError([f"gateway.database_url: not a database URL ({exc})"]) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is bypassed so that BEGIN covers DDL and reads as well.
        event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            raise ConfigError(["gateway.database_url: use postgresql+psycopg://user@host/dbname"])
        connect_args = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in parsed.query}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    raise ConfigError([f"gateway.database_url: unsupported database {backend!r}; use sqlite or postgresql"])


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("gateway") / "migrations"))
    return cfg


def migrate(engine: Engine) -> None:
    """Apply every pending migration (on start-up and before any command that uses the database)."""
    try:
        with transaction(engine) as conn:
            if conn.dialect.name == "postgresql":  # instances starting together migrate one after the other
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key("migrate"),))
            if schema_revision(conn) == SCHEMA_HEAD:
                return
            from alembic import command

            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except sa.exc.OperationalError as exc:
        raise TransientError(f"database unreachable: {exc.orig}") from exc


def schema_revision(conn: Connection) -> str | None:
    """The migration the database is at (alembic's ``alembic_version``); None for a new database."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


@contextmanager
def transaction(engine: Engine, write: bool = True, *, bulk: bool = False) -> Iterator[Connection]:
    """One transaction; a lost database becomes a TransientError. ``write=False`` for read-only work.

    ``bulk``: the import of a snapshot. On SQLite its transaction runs without foreign-key enforcement, so that
    its ``INSERT … SELECT`` statements need no statement journal (``reconcile_sql.insert_new``): those
    statements take every key from the rows they join (the debtor's id from ``debtors``, the run's and the
    administration's ids from the run), and the same statements run on PostgreSQL with its constraints. The
    connection gets its checks back when the transaction ends, whatever its outcome."""
    try:
        with engine.connect() as plain:
            unchecked = bulk and plain.dialect.name == "sqlite"
            if unchecked:
                _foreign_keys(plain, on=False)
            try:
                conn = plain.execution_options(write=write)
                with conn.begin():
                    yield conn
            finally:
                if unchecked:
                    _foreign_keys(plain, on=True)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if exc.connection_invalidated or _is_connectivity(exc):
            if "full" in str(exc.orig).lower():
                raise TransientError(f"the database cannot write, its disk is full: {exc.orig}") from exc
            raise TransientError(f"database unavailable: {exc.orig}") from exc
        raise


def _foreign_keys(conn: Connection, *, on: bool) -> None:
    """SQLite's foreign-key enforcement on ``conn``, outside a transaction (inside one the pragma does nothing).
    A connection that cannot be switched back on is invalidated: the pool never hands it out again."""
    raw = conn.connection.driver_connection
    if raw is None:  # closed with its transaction (``staging.discard_stage`` detaches it) or invalidated
        return
    statement = f"PRAGMA foreign_keys={'ON' if on else 'OFF'}"
    try:
        with _driver_errors(conn, statement):
            raw.execute(statement)
    except sa.exc.DBAPIError:
        conn.invalidate()
        if not on:
            raise


def _is_connectivity(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(s in text for s in ("database is locked", "connection", "server closed", "disk i/o", "full"))


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert many rows fast: COPY on PostgreSQL, the driver's executemany of multi-row VALUES on SQLite.
    ``rows`` is consumed once.

    Both go to the driver directly (through SQLAlchemy's execute, which looks at every row of the parameters,
    1M stage rows cost 0.6 s more on SQLite). Its errors are wrapped as SQLAlchemy wraps them, so that
    ``transaction`` still tells a full disk or a lost database from a bug."""
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return
    names = ", ".join(columns)
    raw = conn.connection.driver_connection
    with _driver_errors(conn, f"INSERT INTO {table} ({names})"):
        if conn.dialect.name == "postgresql":
            with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
            return
        _sqlite_insert_many(raw, f"INSERT INTO {table} ({names}) VALUES ", len(columns), rows)  # type: ignore[arg-type]


def _sqlite_insert_many(raw: sqlite3.Connection, head: str, width: int, rows: list[Sequence[Any]]) -> None:
    """``executemany`` of multi-row VALUES: one statement per SQLITE_VARIABLES parameters. 1M stage rows of 16
    columns took 7.1 s instead of 8.1 s (alternating runs of a 1M-row import, on a slow day) in the importing
    process, which is the busier one during a large import. The rows keep their order."""
    per = max(1, SQLITE_VARIABLES // width)
    one = "(" + ", ".join("?" * width) + ")"
    full = len(rows) - len(rows) % per
    if full:
        flat = [tuple(chain.from_iterable(rows[i : i + per])) for i in range(0, full, per)]
        raw.executemany(head + ", ".join([one] * per), flat)
    if full < len(rows):
        rest = rows[full:]
        raw.execute(head + ", ".join([one] * len(rest)), tuple(chain.from_iterable(rest)))


@contextmanager
def _driver_errors(conn: Connection, statement: str) -> Iterator[None]:
    """The driver's exceptions as SQLAlchemy's (``sa.exc.OperationalError`` and so on)."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, error) from exc


def execute_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """executemany of driver-level SQL written with ``?`` placeholders, on either database."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    conn.exec_driver_sql(sql, list(rows))


def driver_datetime(conn: Connection, value: datetime | None) -> datetime | None:
    """An aware datetime as the driver should receive it for a UTCDateTime column (see gateway.tables)."""
    if value is None or conn.dialect.name != "sqlite":
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def ensure_administration(conn: Connection, code: str, name: str, now: datetime) -> int:
    """The id of administration ``code``, created on first use."""
    found = conn.execute(sa.select(administrations.c.id).where(administrations.c.code == code)).scalar()
    if found is not None:
        conn.execute(
            sa.update(administrations)
            .where(administrations.c.id == found, administrations.c.name != name)
            .values(name=name)
        )
        return int(found)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert
    # Two instances starting on a new database: one inserts, the other finds its row.
    conn.execute(insert(administrations).values(code=code, name=name, created_at=now).on_conflict_do_nothing())
    return int(conn.execute(sa.select(administrations.c.id).where(administrations.c.code == code)).scalar_one())
