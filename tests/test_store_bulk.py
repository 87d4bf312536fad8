"""``store.bulk_insert``: the fast path writes through the driver, yet its errors stay SQLAlchemy's, so that
``transaction`` still tells a full disk from a bug."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from gateway.errors import TransientError
from gateway.store import bulk_insert, make_engine, migrate, transaction
from tests.conftest import drop_postgres_schema, postgres_engine
from tests.test_faults import fill, tmpfs


def test_rows_arrive_and_a_broken_row_is_a_sqlalchemy_error(engine: Engine) -> None:
    with transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE bulk_probe (id INTEGER PRIMARY KEY, name VARCHAR(20))")
        bulk_insert(conn, "bulk_probe", ["id", "name"], [(1, "a"), (2, "b"), (3, None)])
        assert conn.exec_driver_sql("SELECT id, name FROM bulk_probe ORDER BY id").all() == [
            (1, "a"),
            (2, "b"),
            (3, None),
        ]
        with pytest.raises(sa.exc.IntegrityError):
            bulk_insert(conn, "bulk_probe", ["id", "name"], [(4, "d"), (1, "again")])


def test_a_full_disk_during_a_bulk_insert_is_transient(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "size=2m") as folder:
        engine = make_engine(f"sqlite:///{folder / 'gateway.db'}")
        migrate(engine)
        with transaction(engine) as conn:
            conn.exec_driver_sql("CREATE TABLE bulk_probe (id INTEGER PRIMARY KEY, name VARCHAR(200))")
        fill(folder)
        # ~40 MB: more than the page cache (16 MB) keeps, so the insert itself has to write, and more than the disk
        rows = [(n, "x" * 200) for n in range(200_000)]
        with pytest.raises(TransientError, match="disk is full"), transaction(engine) as conn:
            bulk_insert(conn, "bulk_probe", ["id", "name"], rows)
        engine.dispose()


def test_none_and_booleans_are_stored_as_without_adapters(tmp_path: Path) -> None:
    """The driver adapts None and bool through ``store``'s adapters (for speed): still NULL, 1 and 0."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    with transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE typed (flag BOOLEAN, note VARCHAR(20))")
        bulk_insert(conn, "typed", ["flag", "note"], [(True, None), (False, "x"), (None, None)])
        conn.exec_driver_sql("INSERT INTO typed VALUES (?, ?)", (True, None))
        stored = conn.exec_driver_sql("SELECT typeof(flag), flag, typeof(note) FROM typed ORDER BY rowid").all()
        assert [tuple(r) for r in stored] == [
            ("integer", 1, "null"),
            ("integer", 0, "text"),
            ("null", None, "null"),
            ("integer", 1, "null"),
        ]
        flags = conn.execute(sa.text("SELECT flag FROM typed").columns(sa.column("flag", sa.Boolean))).scalars()
        assert list(flags) == [True, False, None, True]
    engine.dispose()


@pytest.mark.parametrize("count", [1, 332, 333, 334, 999, 3 * 333 + 7])
def test_every_row_arrives_once_and_in_order(engine: Engine, count: int) -> None:
    """On SQLite several rows go in one statement (333 of 3 columns): around those boundaries nothing is lost,
    doubled or reordered (the stage tables' rowid order is the batches' order, see gateway.batchwise)."""
    rows = [(count - n, f"name {n}", None if n % 3 else n * 1.5) for n in range(count)]
    with transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE bulk_order (id INTEGER, name VARCHAR(20), value FLOAT)")
        bulk_insert(conn, "bulk_order", ["id", "name", "value"], rows)
        order = "rowid" if engine.dialect.name == "sqlite" else "ctid"
        stored = conn.exec_driver_sql(f"SELECT id, name, value FROM bulk_order ORDER BY {order}").all()
    assert [tuple(r) for r in stored] == rows


# -- the import's transaction (``bulk``) ------------------------------------------------------------------


def _parent_and_child(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TEMPORARY TABLE fk_parent (id INTEGER PRIMARY KEY)")
    conn.exec_driver_sql("CREATE TEMPORARY TABLE fk_child (parent_id INTEGER REFERENCES fk_parent (id))")


def _foreign_keys(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one())


def test_an_import_on_sqlite_checks_no_foreign_keys_and_its_connection_gets_them_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(engine)
    with transaction(engine, bulk=True) as conn:
        assert _foreign_keys(conn) == 0
        _parent_and_child(conn)
        conn.exec_driver_sql("INSERT INTO fk_child VALUES (7)")  # not refused inside the import
        used = conn.connection.driver_connection
    with transaction(engine) as conn:
        assert conn.connection.driver_connection is used  # the pool handed out the same connection again
        assert _foreign_keys(conn) == 1
        with pytest.raises(sa.exc.IntegrityError):
            conn.exec_driver_sql("INSERT INTO fk_child VALUES (8)")
    engine.dispose()


def test_an_import_that_fails_hands_its_connection_back_checked(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(engine)
    with pytest.raises(ZeroDivisionError), transaction(engine, bulk=True) as conn:
        used = conn.connection.driver_connection
        _ = 1 / 0
    with transaction(engine) as conn:
        assert conn.connection.driver_connection is used
        assert _foreign_keys(conn) == 1
    engine.dispose()


def test_an_import_whose_connection_is_detached_ends_cleanly(tmp_path: Path) -> None:
    """A large import detaches its connection (``staging.discard_stage``): it is closed with the transaction
    and never handed out again, so there is nothing to switch back."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(engine)
    with transaction(engine, bulk=True) as conn:
        used = conn.connection.driver_connection
        conn.detach()
    with transaction(engine) as conn:
        assert conn.connection.driver_connection is not used
        assert _foreign_keys(conn) == 1
    engine.dispose()


def test_a_connection_that_cannot_switch_its_checks_is_never_handed_out_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(engine)
    closed: list[object] = []

    def close_on_checkout(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        dbapi_connection.close()  # a fault: the connection breaks between the pool and the transaction
        closed.append(dbapi_connection)

    event.listen(engine, "checkout", close_on_checkout)
    with pytest.raises(sa.exc.DBAPIError), transaction(engine, bulk=True):
        pytest.fail("an import must not start on a connection whose checks could not be switched off")
    event.remove(engine, "checkout", close_on_checkout)
    [broken] = closed
    with transaction(engine, bulk=True) as conn:
        assert conn.connection.driver_connection is not broken
        assert _foreign_keys(conn) == 0
    engine.dispose()


@pytest.mark.postgres
def test_an_import_on_postgresql_keeps_its_constraints() -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = postgres_engine(schema)
    try:
        with pytest.raises(sa.exc.IntegrityError), transaction(engine, bulk=True) as conn:
            _parent_and_child(conn)
            conn.exec_driver_sql("INSERT INTO fk_child VALUES (7)")
    finally:
        engine.dispose()
        drop_postgres_schema(schema)
