"""The daemon: intake and the pipeline in one worker thread, the sender in another; the main thread supervises.

Signal handlers only set events. SIGTERM/SIGINT stop intake; the worker finishes the file in hand, the sender
the message in hand, and the process exits 0. A thread that dies unexpectedly makes the process exit non-zero
(systemd restarts it).

The sender's job: a pass at start-up (the catch-up: what became due while the gateway was down and may still
go now, inside its window), then one at every slot boundary (:00 and :30 by default). The timer only decides
when to run a pass; what is due, and what was sent, is read from the database every time. A reloaded
configuration reaches the sender before its next pass (it is woken for it).

Scheduled imports: the worker looks at every import time (it sleeps until the next one at most) and every
SCHEDULE_CHECK_SECONDS; what is due is decided from the runs in the database (``gateway.imports``).

The main thread talks to systemd (``gateway.notify``): READY=1 once intake, the worker with its scheduled
jobs, the sender and the services run; WATCHDOG=1 every half watchdog interval, but only while the worker is alive and
making progress (``gateway.health.Progress``: it beats at every turn of its loop, at least every
``stall_seconds / 4`` when idle, and on every read of the file in hand); STOPPING=1 on the way out.

SIGHUP reloads (``RELOADING=1``, then ``READY=1``): the main thread reads and validates the file; an invalid
one is logged error by error and the old configuration stays. A valid one is handed to the worker, which
applies it between two files (pipeline, imports, intake watches, SFTP settings, pulls, jobs), so a file is
always processed with one configuration from start to end; READY=1 follows when the worker has applied it.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import BinaryIO, Protocol

import schedule
import structlog
from prometheus_client import CollectorRegistry

from gateway.app import App
from gateway.config import Config, load_config
from gateway.errors import ConfigError, TransientError
from gateway.expected import Expectation
from gateway.health import DbState, Vitals, expectations, health_document, read_db_state, sends_by_status
from gateway.http_server import HttpEndpoint
from gateway.imports import waits_for_schedule
from gateway.instances import SingleInstance, sqlite_path
from gateway.metrics import FileMetrics, SftpStats, StateCollector
from gateway.notify import Notifier
from gateway.pipeline import Delivery, FileGone, RunResult
from gateway.reload import describe_changes, live_config, restart_only_changes
from gateway.retention import purge
from gateway.runs import mark_interrupted
from gateway.slots import make_calendar, next_wakeup
from gateway.store import transaction
from gateway.unpack import clear_work_folders
from gateway.watcher import Claimed, Intake, Refused, open_claimed

log = structlog.get_logger("gateway.daemon")
EX_SOFTWARE = 70
# How long a stop waits for the file and the message in hand: within the unit's TimeoutStopSec (180 s), so
# that a thread that does not stop is logged (with its stack) before systemd kills the process. An import cut
# off this way is rolled back, and its file, still claimed, is imported again at the next start.
STOP_WAIT_SECONDS = 150.0
RETRY_SECONDS = 5.0
SCHEDULE_CHECK_SECONDS = 30
EXPECTED_CHECK_SECONDS = 60


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class BeatingReader(io.BufferedReader):
    """A claimed file whose every read counts as the worker's progress (a long file is not a stuck worker)."""

    def __init__(self, raw: io.RawIOBase, beat: Callable[[], None]):
        super().__init__(raw, buffer_size=1 << 16)
        self._beat = beat

    def read(self, size: int | None = -1) -> bytes:
        self._beat()
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        self._beat()
        return super().read1(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._beat()
        return super().readinto(buffer)


def thread_stack(thread: threading.Thread) -> str:
    """Where ``thread`` is now (its current stack), for the log of a stop that it held up."""
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack: the thread has ended)"


def _pulls(config: Config) -> dict[str, object]:
    return {code: a.pull for code, a in config.administrations.items() if a.pull}


class Daemon:
    def __init__(
        self,
        app: App,
        load: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
    ):
        self.app = app
        self.load = load or (lambda: load_config(None))
        self.notifier = notifier or Notifier()
        self.intake = Intake(app.config, lease=app.lease)
        self.stopping = threading.Event()
        # Daemon threads: a stop waits for them (STOP_WAIT_SECONDS), and then the process exits even if one
        # hangs (in a database call, say), instead of waiting for it at interpreter exit until it is killed.
        self.worker = threading.Thread(target=self._work, name="gateway-worker", daemon=True)
        self.worker_failed = False
        self.vitals = Vitals(stall_seconds=app.config.stall_seconds, last_sweep=lambda: self.intake.last_sweep)
        self.sender = app.make_sender(self.stopping)
        self.sender_thread = threading.Thread(target=self._send_loop, name="gateway-sender", daemon=True)
        self.sender_failed = False
        self.sender_wake = threading.Event()  # stop, or a reloaded configuration
        self.vitals.threads = {"worker": self.worker.is_alive, "sender": self.sender_thread.is_alive}
        self.sftp: Service | None = None
        self.puller: Service | None = None
        self.http: HttpEndpoint | None = None
        self.files_processed = 0
        # reload: the main thread hands a validated configuration to the worker
        self.reload_requested = threading.Event()
        self._pending: Config | None = None
        self._pending_lock = threading.Lock()
        self._applied = threading.Event()
        self._reloading: tuple[Config, Config] | None = None  # (old, new) while the worker applies it
        # scheduled jobs (run by the worker): they only ask it to look; what is due comes from the database
        self.import_check = threading.Event()
        self.import_check.set()
        self.next_import: datetime | None = None  # the next import time: the worker wakes for it
        self.expected_check = threading.Event()
        self.expected_check.set()
        self.retention_due = threading.Event()
        self.retention_due.set()  # a pass at start-up, then every interval
        self.jobs = self._make_jobs(app.config)
        self.overdue: dict[str, Expectation] = {}  # warned lapses, by administration
        # metrics and progress
        self.registry = CollectorRegistry()
        app.observers.append(FileMetrics(self.registry))
        app.observers.append(self._count_file)
        app.open_file = self._open_beating
        app.pipeline.open_file = self._open_beating
        self.registry.register(
            StateCollector(lambda: self.app.config, self._read_db, self.vitals, lambda: self.app.clock(), self._sftp)
        )

    # -- life cycle (main thread) ------------------------------------------------------------------------------

    def run(self) -> int:
        database = sqlite_path(self.app.config.database_url)
        single = SingleInstance(database) if database is not None else None
        if single is not None:
            single.acquire()  # a second daemon on one SQLite database refuses to start (exit 78)
        try:
            return self._run()
        finally:
            self.app.lease.release()
            if single is not None:
                single.release()

    def _run(self) -> int:
        self.sender.make_transport().close()  # a missing SMTP credential stops the start (exit 78)
        self._install_signals()
        with transaction(self.app.engine) as conn:
            interrupted = mark_interrupted(conn, self.app.clock())
        if interrupted:
            log.warning("runs_interrupted", count=interrupted)
        clear_work_folders(self.app.config.data_dir)
        self.intake.start()
        try:
            self._start_services(self.app.config)
        except BaseException:
            self._stop_services()
            self.intake.stop()
            raise
        self.worker.start()
        self.sender_thread.start()
        self.vitals.started_at = self.app.clock()
        self.vitals.ready = True
        log.info(
            "gateway_started",
            administrations=sorted(self.app.config.administrations),
            data_dir=str(self.app.config.data_dir),
            config=self.app.config.source,
        )
        self.notifier.ready(self._summary())
        try:
            self._supervise()
        finally:
            self.notifier.stopping()
            self.stopping.set()
            self.sender_wake.set()
            self.intake.wake()
            deadline = time.monotonic() + STOP_WAIT_SECONDS
            self.worker.join(timeout=STOP_WAIT_SECONDS)
            self._stop_services()
            self.sender_thread.join(timeout=max(1.0, deadline - time.monotonic()))
            self.intake.stop()
            self.notifier.close()
        hung = [t for t in (self.worker, self.sender_thread) if t.is_alive()]
        for thread in hung:
            log.error("thread_did_not_stop", thread=thread.name, stack=thread_stack(thread))
        if hung:
            log.error("gateway_stopped", reason=f"{', '.join(t.name for t in hung)} did not stop in time")
            return EX_SOFTWARE
        if self.worker_failed:
            log.error("gateway_stopped", reason="the worker died unexpectedly")
            return EX_SOFTWARE
        if self.sender_failed:
            log.error("gateway_stopped", reason="the sender died unexpectedly")
            return EX_SOFTWARE
        log.info("gateway_stopped")
        return 0

    def _supervise(self) -> None:
        ping = self.notifier.ping_interval
        tick = 0.5 if ping is None else min(0.5, ping / 2)
        next_ping = 0.0
        withheld = False
        status = ""
        while not self.stopping.wait(tick):
            if self.vitals.dead_threads():
                break
            if self.reload_requested.is_set() and self._reloading is None:
                self.reload_requested.clear()
                self._begin_reload()
            if self._reloading is not None and self._applied.is_set():
                self._finish_reload()
            now = time.monotonic()
            if ping is not None and now >= next_ping:
                if self.vitals.is_progressing():
                    self.notifier.watchdog()
                    next_ping = now + ping
                    if withheld:
                        withheld = False
                        log.info("watchdog_resumed")
                elif not withheld:
                    withheld = True
                    log.error(
                        "watchdog_withheld",
                        reason="the worker has made no progress",
                        seconds=round(self.vitals.progress.age(), 1),
                        stall_seconds=self.vitals.stall_seconds,
                    )
            summary = self._summary()
            if summary != status and self._reloading is None:
                status = summary
                self.notifier.status(summary)

    def _summary(self) -> str:
        config = self.app.config
        parts = [f"{len(config.administrations)} administration(s)", f"{self.files_processed} file(s) processed"]
        server = self._sftp()
        if server is not None:
            parts.append(f"{server.session_count()} SFTP session(s)")
        if self.overdue:
            parts.append(f"overdue: {', '.join(sorted(self.overdue))}")
        if not self.vitals.is_progressing():
            parts.append("worker stuck")
        return "; ".join(parts)

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self.stopping.set()
            self.sender_wake.set()
            self.intake.wake()

        def hup(signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    # -- services ----------------------------------------------------------------------------------------------

    def _start_services(self, config: Config) -> None:
        if config.sftp.enabled:
            self._start_sftp(config)
        self._start_puller(config)
        if config.http.enabled:
            self.http = HttpEndpoint(config.http, self._health, self.registry)
            self.http.start()

    def _start_sftp(self, config: Config) -> None:
        from gateway.feedback import FeedbackWriter
        from gateway.sftp_server import SftpServer

        server = SftpServer(config, self.app.engine, self.app.clock)
        server.start()
        self.sftp = server
        self.app.run_hooks.append(FeedbackWriter(config, self.app.engine, before=server.ledger.flush))

    def _start_puller(self, config: Config) -> None:
        if any(a.pull for a in config.administrations.values()):
            from gateway.sftp_pull import Puller

            puller = Puller(config, self.app.engine, self.app.clock)
            puller.start()
            self.puller = puller

    def _stop_services(self) -> None:
        for service in (self.http, self.puller, self.sftp):
            if service is not None:
                service.stop()

    def _sftp(self) -> SftpStats | None:
        from gateway.sftp_server import SftpServer

        return self.sftp if isinstance(self.sftp, SftpServer) else None

    def _apply_services(self, old: Config, new: Config) -> list[str]:
        """Runs in the worker. Problems are returned (and logged); what could be applied is applied."""
        from gateway.sftp_server import SftpServer

        problems: list[str] = []
        try:
            if isinstance(self.sftp, SftpServer):
                self.sftp.apply(new)
            elif new.sftp.enabled:
                self._start_sftp(new)
        except ConfigError as exc:
            problems += exc.problems
        if _pulls(old) != _pulls(new):
            if self.puller is not None:
                self.puller.stop()
                self.puller = None
            self._start_puller(new)
        return problems

    # -- reload ------------------------------------------------------------------------------------------------

    def _begin_reload(self) -> None:
        self.notifier.reloading()
        old = self.app.config
        log.info("reload_started", config=old.source)
        try:
            new = self.load()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config_error", problem=problem)
            log.error("reload_failed", errors=len(exc.problems), detail="the previous configuration stays in effect")
            self._record_reload(ok=False, errors=exc.problems)
            self.notifier.ready(f"reload failed ({len(exc.problems)} error(s)), previous configuration kept")
            return
        fixed = restart_only_changes(old, new)
        if fixed:
            log.warning("reload_needs_restart", keys=fixed, detail="these settings keep their running values")
        new = live_config(old, new)
        with self._pending_lock:
            self._pending = new
        self._applied.clear()
        self._reloading = (old, new)
        self.intake.wake()

    def _finish_reload(self) -> None:
        assert self._reloading is not None
        old, new = self._reloading
        self._reloading = None
        with self.vitals.lock:
            problems = list(self.vitals.reload.get("errors", []))
        log.info("config_reloaded", config=new.source, **describe_changes(old, new))
        summary = self._summary()
        if problems:
            summary = f"reloaded with {len(problems)} problem(s); {summary}"
        self.notifier.ready(summary)

    def _record_reload(self, ok: bool, errors: list[str]) -> None:
        with self.vitals.lock:
            self.vitals.reload = {"at": self.app.clock().isoformat(), "ok": ok, "errors": errors}

    def _apply_pending(self) -> None:
        """Worker: take a reloaded configuration between two files."""
        with self._pending_lock:
            new, self._pending = self._pending, None
        if new is None:
            return
        old = self.app.config
        problems: list[str] = []
        try:
            self.app.apply_config(new)
            self.intake.apply(new)
            self.vitals.stall_seconds = new.stall_seconds
            if new.retention != old.retention:
                self.jobs = self._make_jobs(new)
            problems = self._apply_services(old, new)
            for problem in problems:
                log.error("reload_problem", problem=problem)
        finally:
            self.import_check.set()
            self.expected_check.set()
            self.sender_wake.set()  # the sender takes the new configuration before its next pass
            self._record_reload(ok=not problems, errors=problems)
            self._applied.set()

    # -- the worker --------------------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._loop()
        except BaseException:
            self.worker_failed = True
            log.exception("worker_died")
            raise

    def _send_loop(self) -> None:
        """A pass now (catch-up), then one at every slot boundary of any administration, until stopped."""
        config = self.app.config
        calendars = [make_calendar(a) for a in config.administrations.values()]
        try:
            while not self.stopping.is_set():
                if self.app.config is not config:  # reloaded (the worker replaced it): rebuild the sender
                    config = self.app.config
                    self.sender = self.app.make_sender(self.stopping)
                    calendars = [make_calendar(a) for a in config.administrations.values()]
                    log.info("sender_reloaded", administrations=sorted(config.administrations))
                try:
                    self.sender.run_slot_pass(calendars)
                except TransientError as exc:
                    log.warning("send_pass_deferred", reason=str(exc))
                except ConfigError as exc:
                    log.error("send_pass_refused", problems=exc.problems)
                now = self.app.clock()
                wake = next_wakeup(now, calendars)
                self.sender_wake.wait(max((wake - now).total_seconds(), 1.0))
                self.sender_wake.clear()
        except BaseException:
            self.sender_failed = True
            log.exception("sender_died")
            raise

    def _loop(self) -> None:
        """Files left claimed by a crash first, then whatever intake finds ready (it sweeps by itself)."""
        pending, retry_at = self._recover_claimed(own=True)
        orphans_at = time.monotonic() + self.app.config.sweep_seconds
        while not self.stopping.is_set():
            self.vitals.progress.beat()
            self._apply_pending()
            if retry_at is not None and time.monotonic() >= retry_at:
                pending, retry_at = self._recover_claimed(own=True)
            elif time.monotonic() >= orphans_at:  # files of an instance that died and did not come back
                pending, failed_at = self._recover_claimed(own=False)
                retry_at = retry_at or failed_at
                orphans_at = time.monotonic() + self.app.config.sweep_seconds
            for item in [*pending, *self.intake.take_ready()]:
                if not self._handle(item):
                    retry_at = time.monotonic() + RETRY_SECONDS
                self.vitals.progress.beat()
                if self.stopping.is_set():
                    return
            pending = []
            self.jobs.run_pending()
            self._run_due_imports()
            self._check_expected()
            self._run_retention()
            self.vitals.progress.beat()
            timeout = RETRY_SECONDS if retry_at is None else max(0.0, retry_at - time.monotonic())
            idle = min(timeout, max(0.0, self.jobs.idle_seconds or 0.0), self.vitals.stall_seconds / 4)
            if self.next_import is not None:
                idle = min(idle, max(0.0, (self.next_import - self.app.clock()).total_seconds()))
            self.intake.wait(idle)

    def _recover_claimed(self, own: bool) -> tuple[list[Claimed | Refused], float | None]:
        """The claimed files to process now, and when to look again if the data folder refused (a full disk:
        the lease file or a takeover rename cannot be written; the files stay where they are)."""
        try:
            return self.intake.recover_claimed(own=own), None
        except OSError as exc:
            log.error("claimed_recovery_deferred", reason=exc.strerror or str(exc), retry_seconds=RETRY_SECONDS)
            return [], time.monotonic() + RETRY_SECONDS

    def _make_jobs(self, config: Config) -> schedule.Scheduler:
        jobs = schedule.Scheduler()
        jobs.every(SCHEDULE_CHECK_SECONDS).seconds.do(self._request, self.import_check)
        jobs.every(EXPECTED_CHECK_SECONDS).seconds.do(self._request, self.expected_check)
        if config.retention.enabled:
            every = max(1, round(config.retention.interval_hours * 3600))
            jobs.every(every).seconds.do(self._request, self.retention_due)
        return jobs

    def _request(self, flag: threading.Event) -> None:
        flag.set()
        self.intake.wake()

    def _run_due_imports(self) -> None:
        """At an import time (woken for it), and every SCHEDULE_CHECK_SECONDS: what is due comes from the database."""
        if self.next_import is not None and self.app.clock() >= self.next_import:
            self.import_check.set()
        if not self.import_check.is_set():
            return
        self.import_check.clear()
        try:
            self.app.imports.run_due(stopping=self.stopping.is_set)
        except TransientError as exc:
            log.warning("scheduled_imports_deferred", reason=str(exc), retry_in_s=SCHEDULE_CHECK_SECONDS)
        self.next_import = self.app.imports.next_import_time(self.app.clock())

    def _check_expected(self) -> None:
        """One ``import_overdue`` warning per lapse (per administration and missed deadline)."""
        if not self.expected_check.is_set():
            return
        self.expected_check.clear()
        db = self._read_db()
        if not db.ok:
            return
        now = self.app.clock()
        current = {c: e for c, e in expectations(self.app.config, db.last_success, now).items() if e.overdue}
        for code, e in sorted(current.items()):
            warned = self.overdue.get(code)
            if warned is None or warned.deadline != e.deadline:
                last = db.last_success.get(code)
                log.warning(
                    "import_overdue",
                    administration=code,
                    expected_at=e.expected_at.isoformat() if e.expected_at else None,
                    deadline=e.deadline.isoformat() if e.deadline else None,
                    last_successful_import=last.isoformat() if last else None,
                )
        for code in sorted(set(self.overdue) - set(current)):
            log.info("import_overdue_resolved", administration=code)
        self.overdue = current

    def _run_retention(self) -> None:
        if not self.retention_due.is_set():
            return
        self.retention_due.clear()
        if not self.app.config.retention.enabled:
            return
        try:
            purge(self.app.config, self.app.engine, self.app.clock())
        except (TransientError, OSError) as exc:
            log.error("retention_failed", error=str(exc))

    def _handle(self, item: Claimed | Refused) -> bool:
        """Process one item; False when it was deferred (the database is away) and stays claimed."""
        delivery = Delivery(item.administration, item.original_name, item.path, marker=item.marker)
        admin = self.app.config.administrations.get(item.administration)
        if isinstance(item, Claimed) and admin is not None and waits_for_schedule(admin, item.path):
            # scheduled / off: the complete file waits, claimed, for its import time or import-now
            log.info(
                "file_waiting", administration=item.administration, file=item.original_name, mode=admin.import_mode
            )
            return True
        try:
            if isinstance(item, Refused):
                self.app.pipeline.refuse(delivery, item.reason)
            else:
                result = self.app.pipeline.process(delivery)
                self._after_run(delivery, result)
        except FileGone as exc:
            log.warning("claimed_file_gone", administration=item.administration, detail=str(exc))
            return True
        except TransientError as exc:
            log.warning(
                "file_deferred",
                file=item.original_name,
                administration=item.administration,
                reason=str(exc),
                retry_in_s=RETRY_SECONDS,
            )
            return False
        return True

    def _after_run(self, delivery: Delivery, result: RunResult) -> None:
        """The hooks (feedback files): a failing hook is logged, never stops the worker."""
        for hook in self.app.run_hooks:
            try:
                hook(delivery, result)
            except Exception as exc:
                log.error("run_hook_failed", hook=type(hook).__name__, run_id=result.run_id, error=repr(exc))

    # -- health --------------------------------------------------------------------------------------------

    def _open_beating(self, path: Path) -> BinaryIO:
        stream = open_claimed(path)
        assert isinstance(stream, io.BufferedReader)
        return BeatingReader(stream.detach(), self.vitals.progress.beat)

    def _count_file(self, result: RunResult, delivery: Delivery, seconds: float) -> None:
        self.files_processed += 1

    def _read_db(self) -> DbState:
        return read_db_state(self.app.engine, sends_by_status)

    def _health(self) -> tuple[bool, dict[str, object]]:
        config = self.app.config
        return health_document(config, self.vitals, self._read_db(), self.app.clock())
