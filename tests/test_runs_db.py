"""The run ledger keeps every problem, also one whose column is a long XML element path (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from gateway.reconcile import Counts
from gateway.records import error
from gateway.runs import COLUMN_MAX, finish_run, load_problems, start_run
from gateway.store import ensure_administration, transaction

NOW = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)


def test_problem_columns_up_to_an_xml_path_are_stored_and_longer_ones_are_shortened(engine: Engine) -> None:
    path = "/OpenItems/Debtor[1234567]/Invoice[1234567]/PaymentReference/Extension"
    assert len(path) > 64  # the first schema's column width
    too_long = "/OpenItems" + "/Debtor[1]" * 40
    with transaction(engine) as conn:
        admin_id = ensure_administration(conn, "ACME", "Acme", NOW)
        run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=NOW)
        problems = [error("bad_date", "not a date", 7, path), error("bad_date", "not a date", 9, too_long)]
        finish_run(conn, run_id, status="performed", now=NOW, counts=Counts(), problems=problems, reason=None)
    with transaction(engine, write=False) as conn:
        stored = load_problems(conn, run_id)["errors"]
    assert [p["row"] for p in stored] == [7, 9]
    assert stored[0]["column"] == path
    assert len(stored[1]["column"]) == COLUMN_MAX and stored[1]["column"].startswith(too_long[:200])
