"""The run ledger: one ``import_runs`` row per delivery or poll, with its problems, and its JSON shape."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from gateway.reconcile import Counts
from gateway.records import Problem, Severity
from gateway.store import bulk_insert
from gateway.tables import COUNT_NAMES, administrations, files, import_runs, run_problems

MAX_LISTED = 1000  # problems listed in a run's JSON; the archive report and `rejected show` have them all
COLUMN_MAX = 255  # run_problems.column_name


def find_file(conn: Connection, administration_id: int, sha256: str) -> int | None:
    found = conn.execute(
        sa.select(files.c.id).where(files.c.administration_id == administration_id, files.c.sha256 == sha256)
    ).scalar()
    return None if found is None else int(found)


def ensure_file(conn: Connection, administration_id: int, sha256: str, size: int, name: str, now: datetime) -> int:
    """The id of the file (administration, SHA-256); its unique key lets one of two racing instances insert
    it, the other waits for that commit and finds the row."""
    found = find_file(conn, administration_id, sha256)
    if found is not None:
        return found
    values = {
        "administration_id": administration_id,
        "sha256": sha256,
        "size": size,
        "original_name": name,
        "first_seen_at": now,
    }
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(files).values(**values).on_conflict_do_nothing())
    found = find_file(conn, administration_id, sha256)
    assert found is not None
    return found


def lock_administration(conn: Connection, administration_id: int) -> None:
    """Serialise the business writes of one administration across instances (PostgreSQL row lock until the
    transaction ends; SQLite has one writer at a time anyway)."""
    conn.execute(sa.select(administrations.c.id).where(administrations.c.id == administration_id).with_for_update())


def find_prior_run(
    conn: Connection, administration_id: int, sha256: str, other_than: int | None = None
) -> Row[Any] | None:
    """The run that already took this content: performed, held or discarded (not rejected: a retry may pass)."""
    query = sa.select(import_runs.c.id, import_runs.c.status, import_runs.c.archived_path).where(
        import_runs.c.administration_id == administration_id,
        import_runs.c.sha256 == sha256,
        import_runs.c.status.in_(("performed", "held", "discarded")),
    )
    if other_than is not None:
        query = query.where(import_runs.c.id != other_than)
    return conn.execute(query.order_by(import_runs.c.id).limit(1)).first()


def start_run(
    conn: Connection,
    *,
    administration_id: int,
    source: str,
    trigger: str,
    now: datetime,
    file_id: int | None = None,
    file_name: str | None = None,
    sha256: str | None = None,
    fmt: str | None = None,
    status: str = "in_progress",
) -> int:
    result = conn.execute(
        import_runs.insert().values(
            administration_id=administration_id,
            file_id=file_id,
            source=source,
            trigger=trigger,
            status=status,
            file_name=file_name,
            sha256=sha256,
            format=fmt,
            started_at=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    now: datetime,
    counts: Counts | None = None,
    problems: Sequence[Problem] = (),
    reason: str | None = None,
    archived_path: str | None = None,
    detected: dict[str, str] | None = None,
    replace_problems: bool = False,
) -> None:
    counts = counts or Counts()
    counts.errors = sum(p.severity is Severity.ERROR for p in problems)
    counts.warnings = sum(p.severity is Severity.WARNING for p in problems)
    values: dict[str, Any] = {"status": status, "finished_at": now, "reason": reason, **counts.as_dict()}
    if archived_path is not None:
        values["archived_path"] = archived_path
    if detected is not None:
        values["detected"] = detected
    conn.execute(import_runs.update().where(import_runs.c.id == run_id).values(**values))
    if replace_problems:
        conn.execute(run_problems.delete().where(run_problems.c.run_id == run_id))
    _insert_problems(conn, run_id, problems)


def _insert_problems(conn: Connection, run_id: int, problems: Sequence[Problem]) -> None:
    bulk_insert(
        conn,
        "run_problems",
        ["run_id", "severity", "row", "column_name", "code", "message"],
        [(run_id, p.severity.value, p.row, _bounded(p.column), p.code, p.message) for p in problems],
    )


def _bounded(column: str | None) -> str | None:
    """A column name or XML element path fits its database column (255); the message keeps the whole path."""
    return column if column is None or len(column) <= COLUMN_MAX else column[: COLUMN_MAX - 1] + "…"


def mark_interrupted(conn: Connection, now: datetime) -> int:
    """Runs left in progress by a crash: failed; their files are still claimed and are processed again."""
    return conn.execute(
        import_runs.update()
        .where(import_runs.c.status == "in_progress")
        .values(
            status="failed",
            finished_at=now,
            reason="interrupted: the gateway stopped while processing; the file is processed again",
        )
    ).rowcount


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def load_problems(conn: Connection, run_id: int, limit: int | None = MAX_LISTED) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"errors": [], "warnings": [], "notices": []}
    query = (
        sa.select(
            run_problems.c.severity,
            run_problems.c.row,
            run_problems.c.column_name,
            run_problems.c.code,
            run_problems.c.message,
        )
        .where(run_problems.c.run_id == run_id)
        .order_by(run_problems.c.row.is_(None).desc(), run_problems.c.row, run_problems.c.id)
    )
    for severity, row, column, code, message in conn.execute(query):
        bucket = out[f"{severity}s"]
        if limit is None or len(bucket) < limit:
            bucket.append({"row": row, "column": column, "code": code, "message": message})
    return out


def run_query() -> sa.Select[Any]:
    return sa.select(import_runs, administrations.c.code.label("administration")).join(
        administrations, administrations.c.id == import_runs.c.administration_id
    )


def run_as_dict(
    conn: Connection, row: Row[Any], with_problems: bool = True, limit: int | None = MAX_LISTED
) -> dict[str, Any]:
    """A run in the JSON shape of CONTRACT.md."""
    m = row._mapping
    out: dict[str, Any] = {
        "run_id": m["id"],
        "administration": m["administration"],
        "source": m["source"],
        "trigger": m["trigger"],
        "status": m["status"],
        "file": m["file_name"],
        "format": m["format"],
        "sha256": m["sha256"],
        "archived_path": m["archived_path"],
        "started_at": _iso(m["started_at"]),
        "finished_at": _iso(m["finished_at"]),
        "detected": m["detected"] or {},
        "counts": {name: m[name] for name in COUNT_NAMES},
        "reason": m["reason"],
    }
    if with_problems:
        problems = load_problems(conn, m["id"], limit)
        out["errors"] = problems["errors"]
        out["warnings"] = problems["warnings"]
        out["notices"] = problems["notices"]
    return out


def get_run(conn: Connection, run_id: int) -> Row[Any] | None:
    return conn.execute(run_query().where(import_runs.c.id == run_id)).first()


def list_runs(
    conn: Connection,
    *,
    now: datetime,
    administration: str | None = None,
    days: int = 31,
    statuses: Iterable[str] | None = None,
) -> list[Row[Any]]:
    query = run_query().where(import_runs.c.started_at >= now - timedelta(days=days))
    if administration:
        query = query.where(administrations.c.code == administration)
    if statuses:
        query = query.where(import_runs.c.status.in_(tuple(statuses)))
    return list(conn.execute(query.order_by(import_runs.c.started_at.desc(), import_runs.c.id.desc())))


def add_problems(conn: Connection, run_id: int, problems: Sequence[Problem]) -> None:
    """More problems for a finished run (what happened after it was applied), with its counts raised."""
    if not problems:
        return
    errors = sum(p.severity is Severity.ERROR for p in problems)
    warnings = sum(p.severity is Severity.WARNING for p in problems)
    conn.execute(
        import_runs.update()
        .where(import_runs.c.id == run_id)
        .values(errors=import_runs.c.errors + errors, warnings=import_runs.c.warnings + warnings)
    )
    _insert_problems(conn, run_id, problems)


def finish_run_status(conn: Connection, run_id: int, status: str, now: datetime, reason: str) -> None:
    conn.execute(
        import_runs.update().where(import_runs.c.id == run_id).values(status=status, finished_at=now, reason=reason)
    )


def newer_applied_run(conn: Connection, administration_id: int, run_id: int) -> int | None:
    found = conn.execute(
        sa.select(sa.func.max(import_runs.c.id)).where(
            import_runs.c.administration_id == administration_id,
            import_runs.c.id > run_id,
            import_runs.c.status == "performed",
        )
    ).scalar()
    return None if found is None else int(found)
