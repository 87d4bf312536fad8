"""``pip install .`` (not only editable) works: the wheel carries the schemas and the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import sqlalchemy as sa

from gateway.store import make_engine, migrate

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_schemas_and_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("payt_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "schemas/payt-csv.columns.json",
        "gateway/migrations/env.py",
        "gateway/migrations/script.py.mako",
        "gateway/migrations/versions/0001_initial_schema.py",
        "parsers/payt_csv.py",
        "gateway/cli.py",
    ):
        assert needed in names, f"{needed} missing from the wheel"
    assert any(n.endswith("entry_points.txt") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "payt-gateway = gateway.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"administrations", "debtors", "invoices", "payments", "import_runs", "run_problems", "files"} <= tables
