"""Migrations on start: a new or older database is brought to the newest migration; one already there is
left alone without loading alembic."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from gateway.store import (
    SCHEMA_HEAD,
    SQLITE_PAGE_SIZE,
    alembic_config,
    make_engine,
    migrate,
    schema_revision,
    transaction,
)


def test_the_schema_head_is_alembics_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def test_a_database_at_the_head_is_left_alone(engine: Engine) -> None:
    with transaction(engine) as conn:
        assert schema_revision(conn) == SCHEMA_HEAD
        before = set(sa.inspect(conn).get_table_names())
    migrate(engine)
    with transaction(engine) as conn:
        assert schema_revision(conn) == SCHEMA_HEAD
        assert set(sa.inspect(conn).get_table_names()) == before


def test_an_older_database_is_migrated_to_the_head(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    with transaction(engine) as conn:
        assert schema_revision(conn) == "0008"
        assert not sa.inspect(conn).has_table("job_slots")
    migrate(engine)
    with transaction(engine) as conn:
        assert schema_revision(conn) == SCHEMA_HEAD
        assert sa.inspect(conn).has_table("job_slots")


def loads_alembic(database: Path) -> bool:
    """Whether ``migrate`` of the SQLite file ``database`` imports alembic, in a fresh process."""
    code = textwrap.dedent(
        f"""
        import sys
        from gateway.store import make_engine, migrate
        migrate(make_engine({f"sqlite:///{database}"!r}))
        print("alembic" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip() == "True"


def test_alembic_is_loaded_only_when_there_is_something_to_migrate(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    assert loads_alembic(database), "a new database is created by the migrations"
    assert not loads_alembic(database), "at the head: nothing to do"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0008'")
        conn.exec_driver_sql("DROP TABLE job_slots")
    engine.dispose()
    assert loads_alembic(database), "behind the head: migrated"
    engine = make_engine(f"sqlite:///{database}")
    with transaction(engine) as conn:
        assert schema_revision(conn) == SCHEMA_HEAD and sa.inspect(conn).has_table("job_slots")
    engine.dispose()


@pytest.mark.parametrize("revision", ["0001", SCHEMA_HEAD])
def test_schema_revision_reads_alembics_table(tmp_path: Path, revision: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    with transaction(engine) as conn:
        assert schema_revision(conn) is None
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    with transaction(engine) as conn:
        assert schema_revision(conn) == revision
    engine.dispose()


def test_a_new_sqlite_database_gets_16_kib_pages_and_an_older_one_keeps_its_own(tmp_path: Path) -> None:
    """Larger pages halve the commit of a large import; an existing database's page size cannot change
    (it would need a VACUUM out of WAL mode), so the setting must leave it as it is and keep it working."""
    new = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    migrate(new)
    old_path = tmp_path / "old.db"
    raw = sqlite3.connect(old_path)
    raw.execute("PRAGMA page_size=4096")
    raw.execute("CREATE TABLE earlier (x)")
    raw.close()
    old = make_engine(f"sqlite:///{old_path}")
    migrate(old)
    try:
        for engine, expected in ((new, SQLITE_PAGE_SIZE), (old, 4096)):
            with transaction(engine) as conn:
                assert conn.exec_driver_sql("PRAGMA page_size").scalar() == expected
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert schema_revision(conn) == SCHEMA_HEAD
    finally:
        new.dispose()
        old.dispose()
