"""``validate``: the problems the daemon would record for a file, without touching the database.

The file-wide rules (duplicate invoice numbers, conflicting debtor data) run on the same stage tables as
in the pipeline, in a scratch in-memory SQLite database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import Administration
from gateway.errors import RejectFile
from gateway.ignore import IgnoreLists
from gateway.pipeline import ParseFn, admin_zone
from gateway.records import Problem, Severity
from gateway.staging import StagePolicy, stage_snapshot
from gateway.store import make_engine, transaction


def validate_file(path: Path, fmt: str, parse: ParseFn, admin: Administration) -> dict[str, Any]:
    problems: list[Problem] = []
    rows = 0
    detected: dict[str, str] = {}
    try:
        with path.open("rb") as stream:
            snapshot = parse(stream, admin)
            engine = make_engine("sqlite://")
            try:
                with transaction(engine) as conn:
                    policy = StagePolicy(admin.kinds, IgnoreLists.from_settings(admin.ignore), admin_zone(admin))
                    staged = stage_snapshot(conn, snapshot, policy)
            finally:
                engine.dispose()
        problems = [*snapshot.problems, *staged.problems]
        rows, detected = snapshot.rows, snapshot.detected
    except RejectFile as exc:
        problems = exc.problems
    errors = [p.as_dict() for p in problems if p.severity is Severity.ERROR]
    return {
        "file": path.name,
        "format": fmt,
        "valid": not errors,
        "rows": rows,
        "detected": detected,
        "errors": errors,
        "warnings": [p.as_dict() for p in problems if p.severity is Severity.WARNING],
        "notices": [p.as_dict() for p in problems if p.severity is Severity.NOTICE],
    }
