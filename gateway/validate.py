"""``validate``: the problems the daemon would record for a file, without touching the database.

The file-wide rules (duplicate invoice numbers, conflicting debtor data) run on the same stage tables as
in the pipeline, in a scratch in-memory SQLite database.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.archive_plan import member_display_name, nested_archive_error
from gateway.config import Administration
from gateway.document_names import decide_document_numbers
from gateway.documents import document_details, document_kind, naming_problem
from gateway.errors import RejectFile
from gateway.ignore import IgnoreLists
from gateway.pipeline import ARCHIVE_KINDS, ParseFn, ReadDocumentFn, admin_zone, check_administration
from gateway.records import Problem, Severity, error
from gateway.stage_rows import StagePolicy
from gateway.staging import stage_snapshot
from gateway.store import make_engine, transaction
from gateway.unpack import unpack
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
    return _result(path, fmt, rows, detected, problems)


def validate_document(
    path: Path, fmt: str, read: ReadDocumentFn, admin: Administration, name: str | None = None
) -> dict[str, Any]:
    """A PDF or UBL document: the same checks as the daemon's, and the invoice number(s) its name or ID gives.
    ``name``: the delivered name (an archive member's), when it is not the file's own.

    Whether that invoice exists is the database's business: the daemon says so when it stores the document.
    """
    name = name or path.name
    problems: list[Problem] = []
    document: dict[str, Any] | None = None
    try:
        with path.open("rb") as stream:
            doc = read(stream)
        named = decide_document_numbers(doc, name, admin.documents.pattern)
        unnamed = naming_problem(named, name)
        problems = [unnamed] if unnamed else []
        document = {
            "kind": document_kind(doc),
            "number": named.number,
            "candidates": list(named.candidates),
            "details": document_details(doc),
        }
    except RejectFile as exc:
        problems = exc.problems
    return _result(path, fmt, 0, {}, problems) | {"file": name, "document": document}


def _result(path: Path, fmt: str, rows: int, detected: dict[str, str], problems: list[Problem]) -> dict[str, Any]:
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


def validate_archive(path: Path, kind: Kind, validate_member: Callable[[Path, str], dict[str, Any]]) -> dict[str, Any]:
    """A zip or gz: what the daemon would do with it (refuse it as a whole, or unpack it) and each member
    validated as if delivered on its own, under its delivered name ``ARCHIVE/MEMBER``. Extracted into a
    temporary folder with the daemon's limits; no database."""
    members: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="payt-validate-") as tmp, path.open("rb") as stream:
        try:
            unpacked = unpack(stream, kind, path.name, Path(tmp))
        except RejectFile as exc:
            problems = exc.problems
        else:
            problems = list(unpacked.notices)
            for member in unpacked.members:
                name = member_display_name(path.name, member.name)
                with member.path.open("rb") as member_stream:
                    nested = sniff(member_stream) in ARCHIVE_KINDS
                result = (
                    _refused_member(name, nested_archive_error(name)) if nested else validate_member(member.path, name)
                )
                members.append({**result, "file": name})
    errors = [p.as_dict() for p in problems if p.severity is Severity.ERROR]
    return {
        "file": path.name,
        "format": kind.value,
        "valid": not errors and all(m["valid"] for m in members),
        "rows": sum(m["rows"] for m in members),
        "detected": {},
        "errors": errors,
        "warnings": [],
        "notices": [p.as_dict() for p in problems if p.severity is Severity.NOTICE],
        "members": members,
    }


def _refused_member(name: str, problem: Problem) -> dict[str, Any]:
    return {
        "file": name,
        "format": None,
        "valid": False,
        "rows": 0,
        "detected": {},
        "errors": [problem.as_dict()],
        "warnings": [],
        "notices": [],
    }
