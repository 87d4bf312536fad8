"""What /healthz, /metrics, STATUS= and the overdue warnings report: read from the database and the daemon.

``Vitals`` is the daemon's side (worker heartbeat, last sweep, reload outcome), written by the daemon's
threads and read by the HTTP thread. Progress: the worker beats at every turn of its loop (an idle worker
turns at least every ``stall_seconds / 4``) and whenever it reads from the file in hand; a worker that has
not beaten for ``stall_seconds`` is stuck (waiting on a lock, a dead mount, a bug).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.config import Config
from gateway.errors import TransientError
from gateway.expected import Expectation, decide_expectation
from gateway.imports import NO_FILE, aware_utc
from gateway.store import transaction
from gateway.tables import administrations, deliveries, import_runs

SUCCESS_STATUSES = ("performed", "duplicate")  # a duplicate is a delivery whose content did not change


class Progress:
    """A heartbeat: ``beat()`` from the worker, ``age()`` from anywhere."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()  # one float store: atomic under the GIL

    def age(self) -> float:
        return max(0.0, self._clock() - self._last)


@dataclass
class Vitals:
    """The daemon's state as the HTTP thread and the main loop see it."""

    progress: Progress = field(default_factory=Progress)
    stall_seconds: float = 900.0
    started_at: datetime | None = None
    ready: bool = False
    threads: Mapping[str, Callable[[], bool]] = field(default_factory=dict)  # name -> is alive
    last_sweep: Callable[[], datetime | None] = lambda: None
    reload: dict[str, Any] = field(default_factory=dict)  # the last reload: at, ok, errors
    lock: threading.Lock = field(default_factory=threading.Lock)

    def dead_threads(self) -> list[str]:
        return [name for name, alive in self.threads.items() if not alive()]

    def is_progressing(self) -> bool:
        return self.progress.age() < self.stall_seconds


def decide_healthy(database_ok: bool, dead_threads: list[str], progressing: bool) -> list[str]:
    """The reasons the process is unhealthy (503); empty when healthy. Overdue imports are not among them:
    the process works, a customer's delivery is late (that is a warning, a metric and an alert)."""
    problems = []
    if not database_ok:
        problems.append("database unreachable")
    problems += [f"{name} thread is not running" for name in dead_threads]
    if not progressing:
        problems.append("the worker has made no progress (stuck)")
    return problems


def last_successful_imports(conn: Connection) -> dict[str, datetime]:
    """Per administration code: when its newest successful import finished (a "no file" run is none)."""
    finished = sa.func.max(sa.func.coalesce(import_runs.c.finished_at, import_runs.c.started_at))
    query = (
        sa.select(administrations.c.code, finished)
        .join(administrations, administrations.c.id == import_runs.c.administration_id)
        .where(
            import_runs.c.status.in_(SUCCESS_STATUSES),
            sa.or_(import_runs.c.reason.is_(None), import_runs.c.reason != NO_FILE),
        )
        .group_by(administrations.c.code)
    )
    out: dict[str, datetime] = {}
    for code, moment in conn.execute(query):
        aware = aware_utc(moment)
        if aware is not None:
            out[code] = aware
    return out


def run_status_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(administration, status) -> number of runs, for the statuses an operator acts on."""
    query = (
        sa.select(administrations.c.code, import_runs.c.status, sa.func.count())
        .join(administrations, administrations.c.id == import_runs.c.administration_id)
        .where(import_runs.c.status.in_(("rejected", "held", "failed")))
        .group_by(administrations.c.code, import_runs.c.status)
    )
    return {(code, status): int(n) for code, status, n in conn.execute(query)}


def sends_by_status(conn: Connection) -> dict[str, Any]:
    """The sender's deliveries by (administration, status), under ``"sends"`` for /metrics and /healthz."""
    query = (
        sa.select(administrations.c.code, deliveries.c.status, sa.func.count())
        .join(administrations, administrations.c.id == deliveries.c.administration_id)
        .group_by(administrations.c.code, deliveries.c.status)
    )
    return {"sends": {(code, status): int(n) for code, status, n in conn.execute(query)}}


def expectations(config: Config, last: Mapping[str, datetime], now: datetime) -> dict[str, Expectation]:
    """Per administration with expected delivery enabled: its expectation now."""
    out = {}
    for code, admin in config.administrations.items():
        if not admin.expected.enabled:
            continue
        out[code] = decide_expectation(
            admin.expected_times,
            ZoneInfo(admin.timezone),
            timedelta(minutes=admin.expected.grace_minutes),
            now,
            last.get(code),
        )
    return out


@dataclass(frozen=True)
class DbState:
    ok: bool
    error: str | None = None
    last_success: Mapping[str, datetime] = field(default_factory=dict)
    run_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # what other readers add (the sender's counts)


def read_db_state(engine: Engine, extra: Callable[[Connection], Mapping[str, Any]] | None = None) -> DbState:
    try:
        with transaction(engine, write=False) as conn:
            return DbState(
                True,
                None,
                last_successful_imports(conn),
                run_status_counts(conn),
                extra(conn) if extra else {},
            )
    except (TransientError, sa.exc.SQLAlchemyError) as exc:
        return DbState(False, str(exc).splitlines()[0][:300])


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def health_document(config: Config, vitals: Vitals, db: DbState, now: datetime) -> tuple[bool, dict[str, Any]]:
    """The /healthz JSON and whether the process is healthy."""
    dead = vitals.dead_threads()
    progressing = vitals.is_progressing()
    problems = decide_healthy(db.ok, dead, progressing)
    expect = expectations(config, db.last_success, now) if db.ok else {}
    admins: dict[str, Any] = {}
    for code in sorted(config.administrations):
        e = expect.get(code)
        admins[code] = {
            "last_successful_import": _iso(db.last_success.get(code)),
            "expected": e is not None,
            "overdue": bool(e and e.overdue),
            "overdue_since": _iso(e.deadline) if e and e.overdue else None,
            "next_deadline": _iso(e.next_deadline) if e else None,
            "held_runs": db.run_counts.get((code, "held"), 0),
        }
    overdue = [code for code, a in admins.items() if a["overdue"]]
    status = "unhealthy" if problems else ("degraded" if overdue else "ok")
    with vitals.lock:
        reload = dict(vitals.reload)
    document = {
        "status": status,
        "problems": problems,
        "now": now.isoformat(),
        "started_at": _iso(vitals.started_at),
        "ready": vitals.ready,
        "database": {"reachable": db.ok, "error": db.error},
        "worker": {
            "alive": "worker" not in dead,
            "progressing": progressing,
            "seconds_since_progress": round(vitals.progress.age(), 3),
            "stall_seconds": vitals.stall_seconds,
        },
        "threads": {name: alive() for name, alive in vitals.threads.items()},
        "last_sweep": _iso(vitals.last_sweep()),
        "overdue": overdue,
        "administrations": admins,
        "config": {"source": config.source, "last_reload": reload or None},
    }
    return not problems, document
