"""Retention (issue 7 item 6): archived files older than the period are removed; the run ledger stays.

The archive keeps every file under a dated folder (``archive/<CODE>/[kind/]YYYY/MM/DD/``, the day of its
run, UTC). A day folder is purged only when the whole day lies before the cut-off ``now - period`` (the
period in calendar years plus days), so nothing younger than the period is ever touched; files that are not
in a dated folder are never touched either (they are reported once per pass). The decision is pure
(``decide_purge``); files of held runs are kept (they wait for an operator). The shell first updates the run
rows (``archived_path`` set to null, a notice ``archive_purged`` added, so ``imports``/``rejected show`` still
show the run and say where its file went; a null path also means the same content delivered again is a plain
duplicate, never mistaken for an interrupted archive move), commits, and only then deletes: a crash in between
leaves files that the next pass removes. Rows of ``documents`` keep their (NOT NULL) path to a purged PDF/UBL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from gateway.config import Config, RetentionSettings
from gateway.store import bulk_insert, transaction
from gateway.tables import import_runs

log = structlog.get_logger("gateway.retention")
PURGED_CODE = "archive_purged"
CHUNK = 500


def cutoff(settings: RetentionSettings, now: datetime) -> date:
    """The first day that is kept: days before it are older than the period. 29 February minus whole years
    is 28 February."""
    today = now.astimezone(UTC).date()
    year = today.year - settings.archive_years
    try:
        start = today.replace(year=year)
    except ValueError:
        start = today.replace(year=year, day=28)
    return start - timedelta(days=settings.archive_days)


def folder_day(relative: PurePosixPath) -> date | None:
    """The run day of an archive file ``CODE/[kind/]YYYY/MM/DD/name`` (relative to archive/), else None."""
    parts = relative.parts
    if len(parts) < 5:
        return None
    year, month, day = parts[-4:-1]
    if not (len(year) == 4 and len(month) == 2 and len(day) == 2 and (year + month + day).isdigit()):
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


@dataclass
class PurgePlan:
    keep_from: date
    files: list[PurePosixPath] = field(default_factory=list)  # relative to data_dir, "archive/..."
    bytes: int = 0
    sizes: dict[PurePosixPath, int] = field(default_factory=dict)
    undated: list[PurePosixPath] = field(default_factory=list)
    days: dict[str, int] = field(default_factory=dict)  # "archive/CODE/…/YYYY/MM/DD" -> files


def decide_purge(entries: list[tuple[PurePosixPath, int]], keep_from: date) -> PurgePlan:
    """``entries``: (path relative to archive/, size). Pure: which go, which are left as undated."""
    plan = PurgePlan(keep_from)
    for relative, size in entries:
        day = folder_day(relative)
        if day is None:
            plan.undated.append(relative)
        elif day < keep_from:
            path = PurePosixPath("archive") / relative
            plan.files.append(path)
            plan.bytes += size
            plan.sizes[path] = size
            folder = str(path.parent)
            plan.days[folder] = plan.days.get(folder, 0) + 1
    plan.files.sort()
    return plan


def archive_entries(archive_dir: Path) -> Iterator[tuple[PurePosixPath, int]]:
    """Every regular file under ``archive_dir`` (never following links), as (relative path, size)."""
    for folder, dirs, names in os.walk(archive_dir, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            relative = PurePosixPath(path.relative_to(archive_dir).as_posix())
            yield relative, st.st_size


def plan_purge(config: Config, now: datetime) -> PurgePlan:
    return decide_purge(list(archive_entries(config.archive_dir)), cutoff(config.retention, now))


def keep_held(engine: Engine, plan: PurgePlan) -> list[PurePosixPath]:
    """A held run's file waits for ``release`` or ``discard``: it is never purged, however old."""
    held: set[str] = set()
    with transaction(engine, write=False) as conn:
        for chunk in _chunks(plan.files):
            query = sa.select(import_runs.c.archived_path).where(
                import_runs.c.status == "held", import_runs.c.archived_path.in_(chunk)
            )
            held.update(str(p) for p in conn.execute(query).scalars())
    kept = [p for p in plan.files if str(p) in held]
    plan.files = [p for p in plan.files if str(p) not in held]
    for path in kept:
        plan.bytes -= plan.sizes.pop(path, 0)
        folder = str(path.parent)
        plan.days[folder] -= 1
        if not plan.days[folder]:
            del plan.days[folder]
    return kept


def purge(config: Config, engine: Engine, now: datetime, dry_run: bool = False) -> tuple[PurgePlan, int]:
    """Apply (or only compute, ``dry_run``) the plan; the number of run rows that pointed at purged files."""
    plan = plan_purge(config, now)
    for path in keep_held(engine, plan):
        log.warning("retention_kept_held", path=str(path), detail="release or discard the held run")
    if plan.undated:
        log.warning("retention_undated_files", count=len(plan.undated), example=str(plan.undated[0]))
    if dry_run or not plan.files:
        return plan, _count_runs(engine, plan) if dry_run else 0
    runs = _detach_runs(engine, plan, now)
    for folder, count in sorted(plan.days.items()):
        log.info("archive_purged", folder=folder, files=count, kept_from=plan.keep_from.isoformat())
    for path in plan.files:
        with contextlib.suppress(FileNotFoundError):
            (config.data_dir / path).unlink()
    _remove_empty_folders(config.archive_dir, {config.data_dir / folder for folder in plan.days})
    log.info(
        "retention_finished",
        files=len(plan.files),
        bytes=plan.bytes,
        folders=len(plan.days),
        runs_updated=runs,
        kept_from=plan.keep_from.isoformat(),
    )
    return plan, runs


def _chunks(paths: list[PurePosixPath]) -> Iterator[list[str]]:
    for start in range(0, len(paths), CHUNK):
        yield [str(p) for p in paths[start : start + CHUNK]]


def _count_runs(engine: Engine, plan: PurgePlan) -> int:
    total = 0
    with transaction(engine, write=False) as conn:
        for chunk in _chunks(plan.files):
            query = sa.select(sa.func.count()).where(import_runs.c.archived_path.in_(chunk))
            total += int(conn.execute(query).scalar() or 0)
    return total


def _detach_runs(engine: Engine, plan: PurgePlan, now: datetime) -> int:
    """The runs whose file goes: archived_path null and a notice naming the path and the day it went."""
    total = 0
    with transaction(engine) as conn:
        for chunk in _chunks(plan.files):
            rows = conn.execute(
                sa.select(import_runs.c.id, import_runs.c.archived_path).where(import_runs.c.archived_path.in_(chunk))
            ).all()
            if not rows:
                continue
            message = "the archived file {} was removed by retention on {} (kept from {} on)"
            bulk_insert(
                conn,
                "run_problems",
                ["run_id", "severity", "row", "column_name", "code", "message"],
                [
                    (rid, "notice", None, None, PURGED_CODE, message.format(path, now.date(), plan.keep_from))
                    for rid, path in rows
                ],
            )
            conn.execute(
                import_runs.update().where(import_runs.c.id.in_([r[0] for r in rows])).values(archived_path=None)
            )
            total += len(rows)
    return total


def _remove_empty_folders(archive_dir: Path, folders: set[Path]) -> None:
    """Each purged day folder and its parents up to archive/, as far as they are empty."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        current = folder
        while current != archive_dir and archive_dir in current.parents:
            try:
                current.rmdir()
            except OSError:
                break
            current = current.parent
