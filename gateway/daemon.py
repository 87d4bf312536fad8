"""The daemon: intake and the pipeline in one worker thread, the sender in another; the main thread supervises.

Signal handlers only set events. SIGTERM/SIGINT stop intake; the worker finishes the file in hand, the sender
the message in hand, and the process exits 0. A thread that dies unexpectedly makes the process exit non-zero
(systemd restarts it).

The sender's job: a pass at start-up (the catch-up: what became due while the gateway was down and may still
go now, inside its window), then one at every slot boundary (:00 and :30 by default). The timer only decides
when to run a pass; what is due, and what was sent, is read from the database every time.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Protocol

import schedule
import structlog

from gateway.app import App
from gateway.errors import ConfigError, TransientError
from gateway.imports import waits_for_schedule
from gateway.pipeline import Delivery, RunResult
from gateway.runs import mark_interrupted
from gateway.slots import make_calendar, next_wakeup
from gateway.store import transaction
from gateway.unpack import clear_work_folders
from gateway.watcher import Claimed, Intake, Refused

log = structlog.get_logger("gateway.daemon")
EX_SOFTWARE = 70
RETRY_SECONDS = 5.0
SCHEDULE_CHECK_SECONDS = 30


class Daemon:
    def __init__(self, app: App):
        self.app = app
        self.intake = Intake(app.config)
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, name="gateway-worker")
        self.worker_failed = False
        self.services: list[Service] = []
        # Scheduled imports: the job only asks the worker to look; what is due comes from the database.
        self.import_check = threading.Event()
        self.import_check.set()
        self.jobs = schedule.Scheduler()
        self.jobs.every(SCHEDULE_CHECK_SECONDS).seconds.do(self._request_import_check)
        self.sender = app.make_sender(self.stopping)
        self.sender_thread = threading.Thread(target=self._send_loop, name="gateway-sender")
        self.sender_failed = False

    def run(self) -> int:
        self.sender.make_transport().close()  # a missing SMTP credential stops the start (exit 78)
        self._install_signals()
        with transaction(self.app.engine) as conn:
            interrupted = mark_interrupted(conn, self.app.clock())
        if interrupted:
            log.warning("runs_interrupted", count=interrupted)
        clear_work_folders(self.app.config.data_dir)
        self.intake.start()
        self.services = build_services(self.app)
        started: list[Service] = []
        try:
            for service in self.services:
                service.start()
                started.append(service)
        except BaseException:
            for service in reversed(started):
                service.stop()
            self.intake.stop()
            raise
        self.worker.start()
        self.sender_thread.start()
        log.info(
            "gateway_started",
            administrations=sorted(self.app.config.administrations),
            data_dir=str(self.app.config.data_dir),
            config=self.app.config.source,
        )
        try:
            while not self.stopping.wait(0.5):
                if not self.worker.is_alive() or not self.sender_thread.is_alive():
                    break
        finally:
            self.stopping.set()
            self.intake.wake()
            self.worker.join(timeout=30)
            for service in reversed(self.services):
                service.stop()
            self.sender_thread.join(timeout=60)
            self.intake.stop()
        if self.worker_failed or self.worker.is_alive():
            log.error("gateway_stopped", reason="the worker died unexpectedly")
            return EX_SOFTWARE
        if self.sender_failed or self.sender_thread.is_alive():
            log.error("gateway_stopped", reason="the sender died unexpectedly")
            return EX_SOFTWARE
        log.info("gateway_stopped")
        return 0

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self.stopping.set()
            self.intake.wake()

        def hup(signum: int, _frame: FrameType | None) -> None:
            log.warning("reload_not_supported", detail="SIGHUP reload is not implemented yet; restart to reload")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def _work(self) -> None:
        try:
            self._loop()
        except BaseException:
            self.worker_failed = True
            log.exception("worker_died")
            raise

    def _send_loop(self) -> None:
        """A pass now (catch-up), then one at every slot boundary of any administration, until stopped."""
        calendars = [make_calendar(a) for a in self.app.config.administrations.values()]
        try:
            while not self.stopping.is_set():
                try:
                    self.sender.run_pass()
                except TransientError as exc:
                    log.warning("send_pass_deferred", reason=str(exc))
                except ConfigError as exc:
                    log.error("send_pass_refused", problems=exc.problems)
                now = self.app.clock()
                wake = next_wakeup(now, calendars)
                self.stopping.wait(max((wake - now).total_seconds(), 1.0))
        except BaseException:
            self.sender_failed = True
            log.exception("sender_died")
            raise

    def _loop(self) -> None:
        """Files left claimed by a crash first, then whatever intake finds ready (it sweeps by itself)."""
        retry_at: float | None = None
        pending: list[Claimed | Refused] = self.intake.recover_claimed()
        while not self.stopping.is_set():
            if retry_at is not None and time.monotonic() >= retry_at:
                pending, retry_at = self.intake.recover_claimed(), None
            for item in [*pending, *self.intake.take_ready()]:
                if not self._handle(item):
                    retry_at = time.monotonic() + RETRY_SECONDS
                if self.stopping.is_set():
                    return
            pending = []
            self.jobs.run_pending()
            self._run_due_imports()
            timeout = RETRY_SECONDS if retry_at is None else max(0.0, retry_at - time.monotonic())
            self.intake.wait(min(timeout, max(0.0, self.jobs.idle_seconds or 0.0)))

    def _request_import_check(self) -> None:
        self.import_check.set()
        self.intake.wake()

    def _run_due_imports(self) -> None:
        if not self.import_check.is_set():
            return
        self.import_check.clear()
        try:
            self.app.imports.run_due(stopping=self.stopping.is_set)
        except TransientError as exc:
            log.warning("scheduled_imports_deferred", reason=str(exc), retry_in_s=SCHEDULE_CHECK_SECONDS)

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


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


def build_services(app: App) -> list[Service]:
    """The long-running parts besides intake: the SFTP server and remote pulls, as configured."""
    services: list[Service] = []
    if app.config.sftp.enabled:
        from gateway.feedback import FeedbackWriter
        from gateway.sftp_server import SftpServer

        server = SftpServer(app.config, app.engine, app.clock)
        services.append(server)
        app.run_hooks.append(FeedbackWriter(app.config, app.engine, before=server.ledger.flush))
    if any(a.pull for a in app.config.administrations.values()):
        from gateway.sftp_pull import Puller

        services.append(Puller(app.config, app.engine, app.clock))
    return services
