"""``store.bulk_insert``: the fast path writes through the driver, yet its errors stay SQLAlchemy's, so that
``transaction`` still tells a full disk from a bug."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.errors import TransientError
from gateway.store import bulk_insert, make_engine, migrate, transaction
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
