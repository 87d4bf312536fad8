"""A poll of an API connector, as one import run: fetch completely → payt-csv file → the file pipeline.

The run row is started first (``source`` = the vendor, ``trigger`` = schedule|manual), so a poll that fails
is visible with its reason. Only a completely fetched snapshot is written out; it is archived like a file
and then parsed, staged, reconciled and guarded by the same code, in one transaction with the run row
(``Pipeline.apply_stream``). A connector error (outage, rate limit beyond the wait budget, refused
authorisation) fails the run and touches no business data; a held snapshot is released like any other.
After a performed run, the open invoices' missing PDFs are downloaded (``gateway.document_fetch``); what goes
wrong there is a warning on the run, never a failed import.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from connectors.base import Connector, ConnectorError
from gateway.apply import RunContext
from gateway.archive import archive_relpath, hash_stream, move_into_archive
from gateway.config import Administration, Config
from gateway.document_fetch import DocumentFetcher, pdf_urls
from gateway.errors import RejectFile, TransientError
from gateway.pipeline import Pipeline, RunResult, admin_zone
from gateway.records import Snapshot, warning
from gateway.runs import add_problems, finish_run, finish_run_status, start_run
from gateway.snapshot_csv import write_snapshot_csv
from gateway.store import ensure_administration, transaction
from gateway.tables import import_runs
from gateway.watcher import open_claimed

ConnectorFactory = Callable[[Administration], Connector]
log = structlog.get_logger("gateway.polling")


class Poller:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        pipeline: Pipeline,
        clock: Callable[[], datetime],
        build_connector: ConnectorFactory,
    ):
        self.config = config
        self.engine = engine
        self.pipeline = pipeline
        self.clock = clock
        self.build_connector = build_connector
        self.documents = DocumentFetcher(config, engine, pipeline, clock)

    def poll(self, code: str, trigger: str) -> RunResult:
        admin = self.config.administrations[code]
        started = time.monotonic()
        now = self.clock()
        name = f"{admin.source}-{now:%Y%m%dT%H%M%S}.csv"
        with transaction(self.engine) as conn:
            admin_id = ensure_administration(conn, admin.code, admin.name, now)
            run_id = start_run(
                conn,
                administration_id=admin_id,
                source=admin.source,
                trigger=trigger,
                now=now,
                file_name=name,
                fmt="payt-csv",
            )
        requests = None
        connector: Connector | None = None
        try:
            connector = self.build_connector(admin)
            snapshot = connector.fetch_snapshot()
            snapshot.entries = entries = list(snapshot.entries)
            requests = snapshot.detected.get("requests")
            result = self._apply(admin, admin_id, run_id, name, snapshot)
            if result.status == "performed":
                result = self._documents(admin, admin_id, run_id, connector, pdf_urls(entries), trigger)
        except ConnectorError as exc:
            result = self._fail(run_id, str(exc))
        except TransientError as exc:
            result = self._fail(run_id, f"the database was unavailable: {exc}; the next poll tries again")
        except Exception as exc:  # a bug must not stop the daemon; the run says what happened
            log.error("poll_crashed", run_id=run_id, error=repr(exc), traceback=traceback.format_exc())
            result = self._fail(run_id, f"internal error while polling ({type(exc).__name__}); see the log")
        finally:
            if connector is not None:
                connector.close()
        log.info(
            "poll_finished",
            run_id=run_id,
            administration=code,
            source=admin.source,
            trigger=trigger,
            outcome=result.status,
            counts=result.run.get("counts"),
            reason=result.run.get("reason"),
            requests=requests,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return result

    def _documents(
        self,
        admin: Administration,
        admin_id: int,
        run_id: int,
        connector: Connector,
        urls: Mapping[str, str],
        trigger: str,
    ) -> RunResult:
        """The applied run's PDFs (``gateway.document_fetch``): whatever happens, the import stays performed."""
        try:
            problems = self.documents.fetch(admin, admin_id, connector, urls, run_id, trigger)
        except Exception as exc:
            log.error("documents_crashed", run_id=run_id, error=repr(exc), traceback=traceback.format_exc())
            reason = f"invoice PDFs were not downloaded ({type(exc).__name__}); see the log"
            problems = [warning("documents_failed", reason)]
        try:
            if problems:
                with transaction(self.engine) as conn:
                    add_problems(conn, run_id, problems)
        except TransientError as exc:
            log.warning("documents_not_recorded", run_id=run_id, problems=[p.message for p in problems], error=str(exc))
        return self._result(run_id)

    def _apply(self, admin: Administration, admin_id: int, run_id: int, name: str, snapshot: Snapshot) -> RunResult:
        """Write the snapshot as payt-csv into the archive, then apply that file with the run row."""
        incoming = self.config.archive_dir / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        partial = incoming / f"{run_id}.csv.part"
        with open(partial, "wb") as out:
            write_snapshot_csv(snapshot.entries, out)
            out.flush()
            os.fsync(out.fileno())
        with open_claimed(partial) as stream:
            sha256, _size = hash_stream(stream)
        now = self.clock()
        relpath = archive_relpath("archived", admin.code, now, run_id, sha256, name)
        target = move_into_archive(partial, self.config.data_dir, relpath)
        ctx = RunContext(admin_id, run_id, now, now.astimezone(admin_zone(admin)).date())
        try:
            with transaction(self.engine) as conn, open_claimed(target) as stream:
                conn.execute(import_runs.update().where(import_runs.c.id == run_id).values(sha256=sha256))
                self.pipeline.apply_stream(conn, ctx, admin, stream, relpath, snapshot.problems)
        except RejectFile as exc:
            with transaction(self.engine) as conn:
                finish_run(
                    conn,
                    run_id,
                    status="rejected",
                    now=self.clock(),
                    problems=exc.problems,
                    reason=exc.problems[0].message,
                    archived_path=relpath,
                    replace_problems=True,
                )
        return self._result(run_id)

    def _fail(self, run_id: int, reason: str) -> RunResult:
        with transaction(self.engine) as conn:
            finish_run_status(conn, run_id, "failed", self.clock(), reason)
        return self._result(run_id)

    def _result(self, run_id: int) -> RunResult:
        return self.pipeline.result(run_id)
