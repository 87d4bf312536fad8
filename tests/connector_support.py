"""Helpers for the connector tests: an app wired to a fake vendor, authorisation as ``connect`` does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from gateway.app import App, build_app
from gateway.config import build_config
from gateway.connect import connect
from gateway.documents import list_documents
from gateway.runs import list_runs, run_as_dict
from gateway.store import transaction
from gateway.tables import debtors
from gateway.tokens import DbTokenStore
from gateway.views import list_invoices
from tests.fakes.base import FakeClock

SECRET_KEY = "test-secret-key-0123456789abcdef"
REDIRECT = "https://app.example/cb"


def make_app(tmp_path: Path, database_url: str, admins: dict[str, Any], clock: FakeClock) -> App:
    data = {"gateway": {"data_dir": str(tmp_path), "database_url": database_url}, "administrations": admins}
    return build_app(build_config(data, tmp_path, "test"), clock=clock.now, connector_clock=clock)


def authorize(app: App, code: str, redirect_uri: str = REDIRECT) -> str:
    """What ``payt-gateway connect CODE --code URL`` does, with the test as the browser: open the
    authorisation URL, take the redirect's address, hand it to connect."""
    connector = app.connectors(app.config.administrations[code])
    try:
        url = connector.authorization_url(redirect_uri, "s")
        assert url is not None
        location = httpx.get(url, follow_redirects=False).headers["location"]
        return connect(connector, redirect_uri, code=location, timeout=1, say=print, read_line=input)
    finally:
        connector.close()


def token_store(app: App, code: str, clock: FakeClock) -> DbTokenStore:
    admin = app.config.administrations[code]
    return DbTokenStore(app.engine, admin.code, admin.name, admin.source, clock)


def stored_invoices(app: App, code: str) -> dict[str, dict[str, Any]]:
    with transaction(app.engine, write=False) as conn:
        return {i["number"]: i for i in list_invoices(conn, administration=code, status="all")}


def table_count(app: App, table: sa.Table) -> int:
    with transaction(app.engine, write=False) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def debtor_row(app: App, code: str) -> dict[str, Any]:
    with transaction(app.engine, write=False) as conn:
        row = conn.execute(sa.select(debtors).where(debtors.c.code == code)).first()
        assert row is not None, f"debtor {code} is not stored"
        return dict(row._mapping)


def stored_documents(app: App, code: str) -> dict[str, dict[str, Any]]:
    """The administration's documents by the invoice they are linked to (None: unlinked)."""
    with transaction(app.engine, write=False) as conn:
        return {d["invoice"]: d for d in list_documents(conn, administration=code)}


def list_runs_json(app: App) -> list[dict[str, Any]]:
    """Every run, newest first, in the JSON shape of ``imports --json``."""
    with transaction(app.engine, write=False) as conn:
        return [run_as_dict(conn, row) for row in list_runs(conn, now=app.clock(), days=3650)]
