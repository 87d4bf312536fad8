"""Scheduled and manual imports: poll a connector, or take the newest delivered file (DOMAIN.md §3).

File sources by ``import_mode``:
- ``on_delivery``: the daemon imports each complete file as it is claimed (not here);
- ``scheduled``: complete files wait, claimed, in ``claimed/<CODE>/``; at an import time the newest is
  imported and older ones are archived as superseded; with none, the run records "no file delivered";
- ``off``: files wait until ``import-now``.
API sources are polled at their import times (``scheduled``) or only by ``import-now`` (``off``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.archive import archive_relpath, hash_stream, move_into_archive
from gateway.config import Administration, Config
from gateway.document_names import is_pdf_name
from gateway.errors import TransientError
from gateway.import_schedule import RunHistory, decide_import_due, next_import_time
from gateway.intake import MARKER_SUFFIX, parse_claimed_name
from gateway.locks import job_lock
from gateway.pipeline import Delivery, Pipeline, RunResult
from gateway.polling import Poller
from gateway.reconcile import Counts
from gateway.records import notice
from gateway.runs import finish_run, start_run
from gateway.store import ensure_administration, transaction
from gateway.tables import administrations, import_runs
from gateway.watcher import open_claimed
from parsers.detect import OPEN_ITEMS_KINDS, Kind, sniff

SCHEDULED_TRIGGERS = ("schedule", "manual")
NO_FILE = "no file delivered since the last import"
log = structlog.get_logger("gateway.imports")


@dataclass(frozen=True)
class DeliveredFile:
    path: Path
    original_name: str
    received_at: datetime
    marker: Path | None = None


def is_open_items(path: Path) -> bool:
    """Open items (CSV or XML, or text the CSV parser will judge) wait for the schedule; documents and
    archives do not (an archive's open-items members wait once they are unpacked). A ``.pdf`` name is a
    document whatever its content (the pipeline rejects it at once when it is not a PDF)."""
    try:
        with open_claimed(path) as stream:
            kind = sniff(stream)
    except OSError:
        return False  # the pipeline refuses it with the reason, on arrival
    return kind in (*OPEN_ITEMS_KINDS, Kind.UNKNOWN, Kind.UNKNOWN_XML) and not is_pdf_name(path.name)


def waits_for_schedule(admin: Administration, path: Path) -> bool:
    return admin.import_mode != "on_delivery" and is_open_items(path)


def run_history(conn: Connection, code: str) -> RunHistory:
    """The newest scheduled/manual runs of ``code`` that did not fail, and that failed (by start time)."""
    base = (
        sa.select(sa.func.max(import_runs.c.started_at))
        .join(administrations, administrations.c.id == import_runs.c.administration_id)
        .where(administrations.c.code == code, import_runs.c.trigger.in_(SCHEDULED_TRIGGERS))
    )
    done = conn.execute(base.where(import_runs.c.status != "failed")).scalar()
    failed = conn.execute(base.where(import_runs.c.status == "failed")).scalar()
    return RunHistory(aware_utc(done), aware_utc(failed))


def aware_utc(value: datetime | None) -> datetime | None:
    """max() bypasses the column type on SQLite: a naive UTC string or datetime comes back."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def delivered_files(config: Config, code: str) -> list[DeliveredFile]:
    """Complete files claimed for ``code`` and not yet imported, oldest first (regular files only)."""
    folder = config.claimed_dir / code
    found: list[DeliveredFile] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        parsed = parse_claimed_name(entry.name)
        if parsed is None or entry.name.endswith(MARKER_SUFFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        path = Path(entry.path)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and is_open_items(path):
            marker = path.with_name(path.name + MARKER_SUFFIX)
            found.append(DeliveredFile(path, parsed[1], parsed[0], marker if marker.exists() else None))
    return sorted(found, key=lambda f: (f.received_at, f.path.name))


class Imports:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        pipeline: Pipeline,
        poller: Poller,
        clock: Callable[[], datetime],
    ):
        self.config = config
        self.engine = engine
        self.pipeline = pipeline
        self.poller = poller
        self.clock = clock

    def due(self, codes: Collection[str] | None = None) -> list[tuple[str, datetime]]:
        """(administration, import time) of every scheduled import that is due now (of ``codes`` if given)."""
        now = self.clock()
        out: list[tuple[str, datetime]] = []
        with transaction(self.engine, write=False) as conn:
            for admin in self.config.administrations.values():
                if admin.import_mode != "scheduled" or (codes is not None and admin.code not in codes):
                    continue
                slot = decide_import_due(
                    admin.import_mode, admin.import_times, ZoneInfo(admin.timezone), now, run_history(conn, admin.code)
                )
                if slot is not None:
                    out.append((admin.code, slot))
        return out

    def next_import_time(self, now: datetime) -> datetime | None:
        """The earliest import time after ``now`` of any scheduled administration (the daemon wakes then)."""
        moments = [
            next_import_time(a.import_times, ZoneInfo(a.timezone), now)
            for a in self.config.administrations.values()
            if a.import_mode == "scheduled"
        ]
        return min((m for m in moments if m is not None), default=None)

    def run_due(self, stopping: Callable[[], bool] = lambda: False) -> list[RunResult]:
        """Each due import once across instances: under its administration's job lock, and only if it is
        still due once the lock is held (another instance may have just run it)."""
        results = []
        for code, _slot in self.due():
            if stopping():
                break
            with job_lock(self.engine, f"import:{code}") as mine:
                if not mine:
                    log.info("import_skipped", administration=code, reason="another instance is running it")
                    continue
                still = self.due([code])
                if not still:
                    continue
                log.info("import_due", administration=code, import_time=still[0][1].isoformat())
                results.append(self._run(code, "schedule"))
        return results

    def run(self, code: str, trigger: str) -> RunResult:
        """One import of ``code`` now: a poll for an API source, the newest delivered file for a file source.
        Refused (a TransientError) while another instance runs an import of ``code``."""
        with job_lock(self.engine, f"import:{code}") as mine:
            if not mine:
                raise TransientError(f"another gateway instance is importing {code} right now; try again shortly")
            return self._run(code, trigger)

    def _run(self, code: str, trigger: str) -> RunResult:
        admin = self.config.administrations[code]
        if admin.source != "file":
            return self.poller.poll(code, trigger)
        return self.take_delivered(admin, trigger)

    def take_delivered(self, admin: Administration, trigger: str) -> RunResult:
        files = delivered_files(self.config, admin.code)
        if not files:
            return self._no_file(admin, trigger)
        newest, older = files[-1], files[:-1]
        for old in older:
            self._supersede(admin, old, newest, trigger)
        return self.pipeline.process(
            Delivery(admin.code, newest.original_name, newest.path, trigger, marker=newest.marker)
        )

    def _no_file(self, admin: Administration, trigger: str) -> RunResult:
        now = self.clock()
        with transaction(self.engine) as conn:
            admin_id = ensure_administration(conn, admin.code, admin.name, now)
            run_id = start_run(conn, administration_id=admin_id, source="file", trigger=trigger, now=now)
            finish_run(
                conn,
                run_id,
                status="performed",
                now=now,
                counts=Counts(),
                problems=[notice("no_file_delivered", f"{NO_FILE}; nothing was imported")],
                reason=NO_FILE,
            )
        log.info("no_file_delivered", administration=admin.code, run_id=run_id, trigger=trigger)
        return self.pipeline.result(run_id)

    def _supersede(self, admin: Administration, old: DeliveredFile, newest: DeliveredFile, trigger: str) -> None:
        """An older delivery that a newer one replaces: archived under ``superseded``, with a run that says so."""
        now = self.clock()
        with open_claimed(old.path) as stream:
            sha256, _size = hash_stream(stream)
        reason = f"superseded by the newer delivery {newest.original_name!r}; not imported"
        with transaction(self.engine) as conn:
            admin_id = ensure_administration(conn, admin.code, admin.name, now)
            run_id = start_run(
                conn,
                administration_id=admin_id,
                source="file",
                trigger=trigger,
                now=now,
                file_name=old.original_name,
                sha256=sha256,
                fmt=admin.format,
            )
            relpath = archive_relpath("superseded", admin.code, now, run_id, sha256, old.original_name)
            finish_run(
                conn,
                run_id,
                status="discarded",
                now=now,
                problems=[notice("superseded", reason)],
                reason=reason,
                archived_path=relpath,
            )
        move_into_archive(old.path, self.config.data_dir, relpath)
        log.info("file_superseded", administration=admin.code, file=old.original_name, run_id=run_id)
