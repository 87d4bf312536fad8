"""``validate``: the problems the daemon would record for a file, without touching the database.

The file-wide rules (duplicate invoice numbers, conflicting debtor data) run on the same stage tables as
in the pipeline, in a scratch in-memory SQLite database.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config import Administration
from gateway.errors import RejectFile
from gateway.ignore import IgnoreLists
from gateway.pipeline import ParseFn, admin_zone, check_administration
from gateway.records import Problem, Severity, error
from gateway.staging import StagePolicy, stage_snapshot
from gateway.store import make_engine, transaction
from parsers.detect import Kind, open_items_format, sniff


def validate_file(path: Path, configured: str, parsers: Mapping[str, ParseFn], admin: Administration) -> dict[str, Any]:
    """Validate ``path`` as the daemon would read it for ``admin``: the format is what the content says
    (``configured`` "auto"), or must agree with it."""
    problems: list[Problem] = []
    rows = 0
    detected: dict[str, str] = {}
    fmt = configured
    try:
        with path.open("rb") as stream:
            kind = sniff(stream)
            fmt = kind.value if kind not in (Kind.UNKNOWN, Kind.UNKNOWN_XML) else configured
            fmt = open_items_format(kind, configured)
            parse = parsers.get(fmt)
            if parse is None:
                raise RejectFile([error("unsupported_format", f"format {fmt!r} is not supported")])
            snapshot = parse(stream, admin)
            if admin.code:
                check_administration(snapshot, admin)
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
