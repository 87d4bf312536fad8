"""Start-up: a command loads what it uses. An import (``ingest``) does without the sender's templates, the
vendors' HTTP client and crypto, and, on a database already migrated, without alembic (a lighter and faster
start for every command, and less memory beside a large import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fleet import open_items, write_config

DAEMON_ONLY = ("httpx", "jinja2", "cryptography", "holidays")  # the sender, the connectors, token encryption


def loaded(*args: str, cwd: Path) -> set[str]:
    """The top-level packages that ``python -m gateway ARGS`` imported (``-X importtime`` on stderr)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the header


def test_ingest_loads_no_daemon_only_library(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "data", "sqlite:///gateway.db", ["ACME"])
    for i in range(2):
        (tmp_path / f"open-{i}.csv").write_bytes(open_items("ACME", 3, start=i * 3))
    first = loaded("--config", str(config), "ingest", "--administration", "ACME", "open-0.csv", cwd=tmp_path)
    assert "sqlalchemy" in first and "alembic" in first, "a new database is created by its migrations"
    again = loaded("--config", str(config), "ingest", "--administration", "ACME", "open-1.csv", cwd=tmp_path)
    assert "sqlalchemy" in again
    assert "alembic" not in again, "the database is at the newest migration"
    assert not again & set(DAEMON_ONLY), sorted(again & set(DAEMON_ONLY))
    assert not first & set(DAEMON_ONLY), sorted(first & set(DAEMON_ONLY))


def test_the_sender_loads_its_templates_when_it_is_made(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "data", "sqlite:///gateway.db", ["ACME"])
    assert "jinja2" in loaded("--config", str(config), "send-due", cwd=tmp_path)
