"""/metrics (prometheus-client): what happened in this process, plus what the database says at scrape time.

In-process (since the process started; Prometheus handles restarts of counters): files by outcome, rows,
processing duration. Read from the SFTP server at scrape time: sessions now, failed logins. Read from the
database at scrape time (so they survive restarts and agree with the CLI): rejected, failed and held runs,
the last successful import, import lag and overdue per administration, sends by status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config import Config
from gateway.health import DbState, Vitals, expectations
from gateway.pipeline import Delivery, RunResult

PREFIX = "payt_gateway"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class SftpStats(Protocol):
    def session_count(self) -> int: ...
    def auth_failure_count(self) -> int: ...


class FileMetrics:
    """The pipeline observer: one call per processed file."""

    def __init__(self, registry: CollectorRegistry):
        self.files = Counter(
            f"{PREFIX}_files_processed",
            "Files processed, by administration and outcome (performed, rejected, held, duplicate, failed, ...)",
            ["administration", "outcome"],
            registry=registry,
        )
        self.rows = Counter(
            f"{PREFIX}_rows_processed", "Rows read from processed files", ["administration"], registry=registry
        )
        self.duration = Histogram(
            f"{PREFIX}_file_processing_seconds",
            "Time from taking a claimed file to its outcome",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def __call__(self, result: RunResult, delivery: Delivery, seconds: float) -> None:
        self.files.labels(delivery.administration, result.status).inc()
        rows = (result.run.get("counts") or {}).get("rows") or 0
        self.rows.labels(delivery.administration).inc(rows)
        self.duration.observe(seconds)


class StateCollector(Collector):
    """Gauges and counters computed at scrape time from the database, the SFTP server and the daemon."""

    def __init__(
        self,
        config: Callable[[], Config],
        read_db: Callable[[], DbState],
        vitals: Vitals,
        clock: Callable[[], datetime],
        sftp: Callable[[], SftpStats | None],
    ):
        self.config = config
        self.read_db = read_db
        self.vitals = vitals
        self.clock = clock
        self.sftp = sftp

    def collect(self) -> Iterable[Metric]:
        config = self.config()
        db = self.read_db()
        now = self.clock()
        yield _gauge("database_up", "1 when the database answered this scrape", db.ok)
        yield _gauge("worker_progressing", "1 while the worker is alive and making progress", self._progressing())
        age = self.vitals.progress.age()
        yield _gauge("worker_seconds_since_progress", "Seconds since the worker last made progress", age)
        server = self.sftp()
        if server is not None:
            yield _gauge("sftp_sessions", "SFTP connections being served now", server.session_count())
            failures = CounterMetricFamily(f"{PREFIX}_sftp_auth_failures", "Failed SFTP login attempts")
            failures.add_metric([], server.auth_failure_count())
            yield failures
        if not db.ok:
            return
        runs = CounterMetricFamily(
            f"{PREFIX}_runs",
            "Import runs ever recorded with this status (from the database)",
            labels=["administration", "status"],
        )
        held = GaugeMetricFamily(
            f"{PREFIX}_held_runs", "Held runs waiting for release or discard", labels=["administration"]
        )
        for code in sorted(config.administrations):
            for status in ("rejected", "failed"):
                runs.add_metric([code, status], db.run_counts.get((code, status), 0))
            held.add_metric([code], db.run_counts.get((code, "held"), 0))
        yield runs
        yield held
        last = GaugeMetricFamily(
            f"{PREFIX}_last_successful_import_timestamp_seconds",
            "When the newest successful import finished (Unix time)",
            labels=["administration"],
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_import_lag_seconds", "Seconds since the newest successful import", labels=["administration"]
        )
        overdue = GaugeMetricFamily(
            f"{PREFIX}_import_overdue",
            "1 when an expected import has not arrived by its deadline",
            labels=["administration"],
        )
        for code, moment in sorted(db.last_success.items()):
            if code in config.administrations:
                last.add_metric([code], moment.timestamp())
                lag.add_metric([code], max(0.0, (now - moment).total_seconds()))
        for code, expectation in sorted(expectations(config, db.last_success, now).items()):
            overdue.add_metric([code], 1.0 if expectation.overdue else 0.0)
        yield last
        yield lag
        yield overdue
        yield from _sends(db)

    def _progressing(self) -> bool:
        return not self.vitals.dead_threads() and self.vitals.is_progressing()


def _sends(db: DbState) -> Iterable[Metric]:
    """Sends by status, when the database has the sender's tables (``extra["sends"]``)."""
    sends = db.extra.get("sends")
    if sends is None:
        return
    family = GaugeMetricFamily(
        f"{PREFIX}_sends", "Planned and made sends (deliveries) by status", labels=["administration", "status"]
    )
    for (code, status), n in sorted(sends.items()):
        family.add_metric([code, status], n)
    yield family


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=float(value))
