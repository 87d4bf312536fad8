"""The pipeline: a claimed file → parse → stage → reconcile (one transaction with its run row) → archive.

Idempotent by construction (DESIGN.md rule 3): a file's identity is (administration, SHA-256). The business
writes and the run's ledger row commit together; the archive move happens only after the commit. A crash
before the commit leaves the file claimed, and it is processed again; a crash after the commit finds the
committed run at the next attempt and completes the archive move.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.apply import RunContext, import_rows
from gateway.archive import archive_relpath, hash_stream, move_into_archive, write_report
from gateway.archive_plan import is_member, nested_archive_error
from gateway.config import Administration, Config
from gateway.document_names import NamedNumbers, decide_document_numbers
from gateway.documents import Received, document_format, store_document
from gateway.errors import GatewayError, RejectFile, TransientError
from gateway.ignore import IgnoreLists
from gateway.intake import MARKER_SUFFIX, MAX_MARKER_BYTES, decide_marker_content, make_claimed_name
from gateway.parse_worker import WORKER_FORMATS, WorkerRows, own_offsets, worth_a_worker
from gateway.parse_worker import ParseFn as ParseFn  # re-exported: the composition root's parsers
from gateway.reconcile import Counts
from gateway.records import Document, Problem, Snapshot, UblDocument, error, notice
from gateway.runs import (
    ensure_file,
    find_prior_run,
    finish_run,
    finish_run_status,
    get_run,
    lock_administration,
    newer_applied_run,
    run_as_dict,
    start_run,
)
from gateway.stage_rows import LocalRows, RowSource, StagePolicy
from gateway.staging import discard_stage, naive_utc
from gateway.store import ensure_administration, transaction
from gateway.unpack import claim_members, unpack, work_folder
from parsers.detect import Kind, open_items_format, sniff

ReadDocumentFn = Callable[[BinaryIO], Document]
OpenFn = Callable[[Path], BinaryIO]
log = structlog.get_logger("gateway.pipeline")
ARCHIVE_KINDS = (Kind.ZIP, Kind.GZIP)


class FileGone(GatewayError):
    """A claimed file vanished before it was read: another instance took it (a scheduled import of a
    waiting file, or a take-over); nothing was recorded for it here."""


class TakenMeanwhile(GatewayError):
    """The same content was imported by another instance while this one read it: this run is a duplicate."""

    def __init__(self, run_id: int, status: str):
        super().__init__(f"already processed in run {run_id}")
        self.run_id = run_id
        self.status = status


@dataclass(frozen=True)
class Delivery:
    """A file handed to the pipeline: already claimed (in the private folder), not yet read."""

    administration: str
    original_name: str
    path: Path
    trigger: str = "delivery"
    marker: Path | None = None  # its claimed done marker (``NAME.done``), archived beside it
    source: str = "file"  # the run's source: "file", or the vendor whose connector downloaded a document
    invoice_number: str | None = None  # a downloaded document's invoice, known to its source (not by its name)


@dataclass(frozen=True)
class RunResult:
    run_id: int
    status: str
    run: dict[str, Any]
    members: tuple[RunResult, ...] = ()  # an archive's members, each its own run
    unpacked: tuple[Delivery, ...] = ()  # an archive's members, claimed and not yet processed


Observer = Callable[[RunResult, Delivery, float], None]  # (result, delivery, seconds) after each file


class Pipeline:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        parsers: Mapping[str, ParseFn],
        open_file: OpenFn,
        clock: Callable[[], datetime],
        document_readers: Mapping[str, ReadDocumentFn],
        owner: Callable[[], str],
        worker_min_bytes: int | None = None,
    ):
        """``worker_min_bytes``: files from this size on are parsed in a worker process (None: never)."""
        self.worker_min_bytes = worker_min_bytes
        self.owner = owner  # the token of this process's lease (gateway.instances): unpacked members are its files
        self.config = config
        self.engine = engine
        self.parsers = parsers
        self.open_file = open_file
        self.clock = clock
        self.document_readers = document_readers
        self.observers: list[Observer] = []  # told of every processed file (metrics); they must not raise

    # -- entry points -------------------------------------------------------------------------------------

    def process(self, delivery: Delivery) -> RunResult:
        """Process one claimed file to its end: performed, held, rejected, duplicate or failed."""
        started = time.monotonic()
        admin = self.config.administrations[delivery.administration]
        now = self.clock()
        try:
            with self.open_file(delivery.path) as stream:
                kind = sniff(stream)
                with self._early_rows(delivery, admin, stream, kind) as early:
                    sha256, size = hash_stream(stream)
                    marker_problem = self._check_marker(delivery, sha256)
                    result = self._process(delivery, admin, stream, sha256, size, kind, now, marker_problem, early)
        except OSError as exc:
            if getattr(exc, "reason", None) == "missing":
                raise FileGone(f"{delivery.original_name}: the claimed file is gone ({delivery.path})") from exc
            result = self._refuse(delivery, f"the file cannot be read safely: {exc.strerror or exc}", now)
        self._log(result, delivery, time.monotonic() - started)
        if result.unpacked:  # an archive: each member as if delivered on its own, in the archive's order
            members = tuple(self.process(member) for member in result.unpacked)
            result = dataclasses.replace(result, members=members, unpacked=())
        return result

    def refuse(self, delivery: Delivery, reason: str) -> RunResult:
        """A symlink, hard link or special file: never opened; archived as it is under ``rejected``."""
        started = time.monotonic()
        result = self._refuse(delivery, reason, self.clock())
        self._log(result, delivery, time.monotonic() - started)
        return result

    def release(self, run_id: int) -> RunResult:
        """Apply a held snapshot exactly as if it had just arrived, without the guards."""
        now = self.clock()
        with transaction(self.engine, bulk=True) as conn:
            row = self._held_run(conn, run_id)
            newer = newer_applied_run(conn, row.administration_id, run_id)
            if newer is not None:
                raise LookupError(
                    f"run {newer} of {row.administration} was applied after run {run_id}; releasing this older "
                    "snapshot would undo it. Discard it instead."
                )
            admin = self.config.administrations.get(row.administration)
            if admin is None:
                raise LookupError(f"administration {row.administration} is no longer configured")
            ctx = RunContext(row.administration_id, run_id, now, now.astimezone(admin_zone(admin)).date())
            with self.open_file(self.config.data_dir / row.archived_path) as stream:
                self._apply(conn, ctx, admin, stream, guards_enabled=False, relpath=None)
        return self._result(run_id)

    def discard(self, run_id: int) -> RunResult:
        now = self.clock()
        with transaction(self.engine) as conn:
            row = self._held_run(conn, run_id)
            finish_run_status(conn, run_id, "discarded", now, f"discarded by an operator at {now.isoformat()}")
            return RunResult(run_id, "discarded", run_as_dict(conn, get_run(conn, row.id)))  # type: ignore[arg-type]

    # -- the work -----------------------------------------------------------------------------------------

    def _process(
        self,
        delivery: Delivery,
        admin: Administration,
        stream: BinaryIO,
        sha256: str,
        size: int,
        kind: Kind,
        now: datetime,
        marker_problem: Problem | None = None,
        early: WorkerRows | None = None,
    ) -> RunResult:
        doc_format = document_format(kind, delivery.original_name)
        with transaction(self.engine) as conn:
            admin_id = ensure_administration(conn, admin.code, admin.name, now)
            prior = find_prior_run(conn, admin_id, sha256)
            file_id = ensure_file(conn, admin_id, sha256, size, delivery.original_name, now)
            if prior is not None and prior.archived_path and not (self.config.data_dir / prior.archived_path).exists():
                # Crash after the commit, before the archive move: finish the move, no new run.
                self._archive(delivery, prior.archived_path)
                log.info("archive_completed", run_id=prior.id, archived_path=prior.archived_path)
                return RunResult(prior.id, prior.status, run_as_dict(conn, get_run(conn, prior.id)))  # type: ignore[arg-type]
            if marker_problem is not None:
                prior = None  # a corrupt file is rejected, even when its content was seen before
            status = "duplicate" if prior is not None else "in_progress"
            run_id = start_run(
                conn,
                administration_id=admin_id,
                source=delivery.source,
                trigger=delivery.trigger,
                now=now,
                file_id=file_id,
                file_name=delivery.original_name,
                sha256=sha256,
                fmt=doc_format or (kind.value if kind not in (Kind.UNKNOWN, Kind.UNKNOWN_XML) else admin.format),
                status=status,
            )
        if prior is not None:
            relpath = archive_relpath("duplicate", admin.code, now, run_id, sha256, delivery.original_name)
            reason = f"the same content was already processed in run {prior.id} ({prior.status})"
            return self._finish_simple(run_id, "duplicate", reason, [], delivery, relpath)
        relpath = archive_relpath("archived", admin.code, now, run_id, sha256, delivery.original_name)
        ctx = RunContext(admin_id, run_id, now, now.astimezone(admin_zone(admin)).date())
        unpacked: list[Delivery] = []
        try:
            if marker_problem is not None:
                raise RejectFile([marker_problem])
            if kind in ARCHIVE_KINDS:
                unpacked = self._unpack(delivery, kind, stream, ctx, relpath, sha256)
            else:
                with transaction(self.engine, bulk=True) as conn:
                    lock_administration(conn, admin_id)
                    taken = find_prior_run(conn, admin_id, sha256, other_than=run_id)
                    if taken is not None:
                        raise TakenMeanwhile(taken.id, taken.status)
                    if doc_format is not None:
                        received = Received(admin_id, run_id, file_id, delivery.original_name, relpath, now)
                        self._store_document(conn, received, admin, stream, doc_format, delivery.invoice_number)
                    else:
                        self._apply(conn, ctx, admin, stream, guards_enabled=True, relpath=relpath, early=early)
        except RejectFile as exc:
            relpath = archive_relpath("rejected", admin.code, now, run_id, sha256, delivery.original_name)
            return self._finish_simple(run_id, "rejected", exc.problems[0].message, exc.problems, delivery, relpath)
        except TakenMeanwhile as exc:  # the same content, delivered twice, imported by another instance first
            relpath = archive_relpath("duplicate", admin.code, now, run_id, sha256, delivery.original_name)
            reason = f"the same content was already processed in run {exc.run_id} ({exc.status})"
            return self._finish_simple(run_id, "duplicate", reason, [], delivery, relpath)
        except TransientError:
            self._mark_failed(run_id, "the database was unavailable; the file stays claimed and is tried again")
            raise
        except Exception as exc:  # a bug must not stop the daemon nor lose the file
            log.error("file_processing_crashed", run_id=run_id, error=repr(exc), traceback=traceback.format_exc())
            relpath = archive_relpath("rejected", admin.code, now, run_id, sha256, delivery.original_name)
            problem = error(
                "internal_error",
                f"internal error while processing the file ({type(exc).__name__}); "
                "the file is kept; retry it after the gateway has been fixed",
            )
            return self._finish_simple(run_id, "failed", problem.message, [problem], delivery, relpath)
        self._archive(delivery, relpath)
        return dataclasses.replace(self._result(run_id), unpacked=tuple(unpacked))

    def apply_stream(
        self,
        conn: Connection,
        ctx: RunContext,
        admin: Administration,
        stream: BinaryIO,
        relpath: str,
        extra_problems: Sequence[Problem] = (),
    ) -> str:
        """For a connector's snapshot file (gateway.polling): parse, stage, reconcile with the guards, and
        finish run ``ctx.run_id`` inside ``conn``'s transaction, exactly as for a delivered file."""
        return self._apply(conn, ctx, admin, stream, True, relpath, extra_problems)

    def result(self, run_id: int) -> RunResult:
        """A run as its result (status and JSON shape), for the callers that finish runs themselves."""
        return self._result(run_id)

    def _apply(
        self,
        conn: Connection,
        ctx: RunContext,
        admin: Administration,
        stream: BinaryIO,
        guards_enabled: bool,
        relpath: str | None,
        extra_problems: Sequence[Problem] = (),
        early: WorkerRows | None = None,
    ) -> str:
        """Parse, stage and reconcile inside ``conn``'s transaction, and finish the run row there too.
        ``early``: the file's parse worker, already started (``_early_rows``)."""
        lock_administration(conn, ctx.administration_id)
        fmt = open_items_format(sniff(stream), admin.format)
        parse = self.parsers.get(fmt)
        if parse is None:
            raise RejectFile([error("unsupported_format", f"format {fmt!r} is not supported")])
        policy = stage_policy(admin)
        with self._row_source(stream, fmt, parse, admin, policy, naive_utc(conn), early) as source:
            snapshot = source.snapshot
            check_administration(snapshot, admin)
            guards = admin.guards if guards_enabled else None
            staged, applied = import_rows(conn, ctx, source, guards=guards, ignore=policy.ignore)
        problems = [*extra_problems, *snapshot.problems, *staged.problems, *applied.problems]
        status = "held" if applied.held else "performed"
        reason = applied.held if applied.held else (None if guards_enabled else "released by an operator")
        finish_run(
            conn,
            ctx.run_id,
            status=status,
            now=self.clock(),
            counts=applied.counts,
            problems=problems,
            reason=reason,
            archived_path=relpath,
            detected=snapshot.detected,
            replace_problems=True,
        )
        discard_stage(conn)
        return status

    def _store_document(
        self,
        conn: Connection,
        received: Received,
        admin: Administration,
        stream: BinaryIO,
        doc_format: str,
        invoice_number: str | None = None,
    ) -> None:
        """Check the document, store it, link it to its invoice if that is there, and finish the run row.
        ``invoice_number``: the invoice its source says it belongs to; else its name (or UBL ID) says."""
        doc = self.document_readers[doc_format](stream)
        if invoice_number is not None:
            named = NamedNumbers(invoice_number, (invoice_number,))
        else:
            named = decide_document_numbers(doc, received.file_name, admin.documents.pattern)
        problems = store_document(conn, received, doc, named)
        detected = {"document": doc_format}
        if isinstance(doc, UblDocument):
            detected |= {"type": doc.kind, "number": doc.number}
        else:
            detected |= {"pdf_version": doc.version}
        finish_run(
            conn,
            received.run_id,
            status="performed",
            now=self.clock(),
            problems=problems,
            archived_path=received.archived_path,
            detected=detected,
            replace_problems=True,
        )

    def _unpack(
        self, delivery: Delivery, kind: Kind, stream: BinaryIO, ctx: RunContext, relpath: str, sha256: str
    ) -> list[Delivery]:
        """Extract an archive's members into claimed files, then commit the archive's run as performed with
        one notice per member. A crash before the commit unpacks it again (its members are then duplicates)."""
        if is_member(delivery.original_name):
            raise RejectFile([nested_archive_error(delivery.original_name)])
        workdir = work_folder(self.config.data_dir, ctx.run_id)
        try:
            unpacked = unpack(stream, kind, delivery.original_name, workdir)
            folder = self.config.claimed_dir / delivery.administration
            claimed = claim_members(unpacked, delivery.original_name, folder, ctx.now, self.owner())
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        taken = [notice("member_unpacked", f"member {name!r} is processed as its own file") for name, _ in claimed]
        with transaction(self.engine) as conn:
            lock_administration(conn, ctx.administration_id)
            prior = find_prior_run(conn, ctx.administration_id, sha256, other_than=ctx.run_id)
            if prior is not None:  # another instance unpacked the same archive first: these copies go
                for _name, path in claimed:
                    path.unlink(missing_ok=True)
                raise TakenMeanwhile(prior.id, prior.status)
            finish_run(
                conn,
                ctx.run_id,
                status="performed",
                now=self.clock(),
                counts=Counts(),
                problems=[*unpacked.notices, *taken],
                reason=f"unpacked {len(claimed)} member(s)",
                archived_path=relpath,
                replace_problems=True,
            )
        return [Delivery(delivery.administration, name, path, delivery.trigger) for name, path in claimed]

    def _check_marker(self, delivery: Delivery, sha256: str) -> Problem | None:
        """The done marker claimed with the file: empty, or the file's SHA-256 (else the file is corrupt)."""
        if delivery.marker is None:
            return None
        try:
            with self.open_file(delivery.marker) as marker:
                content = marker.read(MAX_MARKER_BYTES + 1)
        except OSError as exc:
            return error("done_marker_invalid", f"the done marker cannot be read safely: {exc.strerror or exc}")
        found = decide_marker_content(content, sha256)
        return None if found is None else error(*found)

    def _archive(self, delivery: Delivery, relpath: str) -> None:
        """Move the file (and first its done marker, as ``<archived>.done``) into the archive."""
        if delivery.marker is not None and delivery.marker.exists():
            move_into_archive(delivery.marker, self.config.data_dir, relpath + MARKER_SUFFIX)
        move_into_archive(delivery.path, self.config.data_dir, relpath)

    @contextmanager
    def _early_rows(
        self, delivery: Delivery, admin: Administration, stream: BinaryIO, kind: Kind
    ) -> Iterator[WorkerRows | None]:
        """The parse worker of a large open-items file, started before the file is hashed and its run recorded:
        it starts and reads the header meanwhile (1M rows: ~0.2 s sooner at the first row). Stopped on the way
        out if the file did not need it (a duplicate, a corrupt file)."""
        try:
            fmt = open_items_format(kind, admin.format)  # raises for an archive, a PDF or UBL by content
        except RejectFile:  # not open items at all: the import says so
            fmt = ""
        parse = self.parsers.get(fmt)
        if (
            parse is None
            or document_format(kind, delivery.original_name) is not None  # a .pdf name
            or not own_offsets()
            or not self._worker_pays(stream, fmt, parse)
        ):
            yield None
            return
        try:
            rows = WorkerRows(stream, parse, admin, stage_policy(admin), naive_utc(self.engine))
        except OSError:  # no process can be started now: the import tries again, and fails its run if it must
            yield None
            return
        with rows:
            yield rows

    @contextmanager
    def _row_source(
        self,
        stream: BinaryIO,
        fmt: str,
        parse: ParseFn,
        admin: Administration,
        policy: StagePolicy,
        naive: bool,
        early: WorkerRows | None = None,
    ) -> Iterator[RowSource]:
        """The snapshot and its stage rows: parsed in a worker process when that pays off (``early``: one
        already started, stopped by its starter), else here."""
        if early is not None:
            yield early
        elif self._worker_pays(stream, fmt, parse):
            with WorkerRows(stream, parse, admin, policy, naive) as rows:
                yield rows
        else:
            yield LocalRows(parse(stream, admin), policy, naive)

    def _worker_pays(self, stream: BinaryIO, fmt: str, parse: ParseFn) -> bool:
        return fmt in WORKER_FORMATS and worth_a_worker(stream, parse, self.worker_min_bytes)

    def _held_run(self, conn: Connection, run_id: int) -> Any:
        row = get_run(conn, run_id)
        if row is None:
            raise LookupError(f"there is no import run {run_id}")
        if row.status != "held":
            raise LookupError(f"run {run_id} is {row.status}, not held")
        return row

    # -- endings ------------------------------------------------------------------------------------------

    def _finish_simple(
        self, run_id: int, status: str, reason: str, problems: list[Problem], delivery: Delivery, relpath: str
    ) -> RunResult:
        with transaction(self.engine) as conn:
            finish_run(
                conn,
                run_id,
                status=status,
                now=self.clock(),
                counts=Counts(),
                problems=problems,
                reason=reason,
                archived_path=relpath,
                replace_problems=True,
            )
            run = run_as_dict(conn, get_run(conn, run_id), limit=None)  # type: ignore[arg-type]
        try:  # the report first: a full disk then leaves the file claimed, to be tried again with its report
            if status in ("rejected", "failed"):
                write_report(self.config.data_dir, relpath, run)
            self._archive(delivery, relpath)
        except TransientError as exc:
            self._mark_failed(run_id, f"{exc}; this run is replaced by the next attempt")
            raise
        return self._result(run_id)

    def _refuse(self, delivery: Delivery, reason: str, now: datetime) -> RunResult:
        admin = self.config.administrations[delivery.administration]
        with transaction(self.engine) as conn:
            admin_id = ensure_administration(conn, admin.code, admin.name, now)
            run_id = start_run(
                conn,
                administration_id=admin_id,
                source="file",
                trigger=delivery.trigger,
                now=now,
                file_name=delivery.original_name,
                fmt=admin.format,
            )
        relpath = archive_relpath("rejected", admin.code, now, run_id, None, delivery.original_name)
        problem = error("refused_file", f"refused: {reason}; the file was not read")
        return self._finish_simple(run_id, "rejected", problem.message, [problem], delivery, relpath)

    def _mark_failed(self, run_id: int, reason: str) -> None:
        try:
            with transaction(self.engine) as conn:
                finish_run_status(conn, run_id, "failed", self.clock(), reason)
        except TransientError:
            log.warning("run_not_marked_failed", run_id=run_id)

    def _result(self, run_id: int) -> RunResult:
        with transaction(self.engine, write=False) as conn:
            row = get_run(conn, run_id)
            assert row is not None
            run = run_as_dict(conn, row)
        return RunResult(run_id, run["status"], run)

    def _log(self, result: RunResult, delivery: Delivery, seconds: float) -> None:
        run = result.run
        log.info(
            "file_processed",
            run_id=result.run_id,
            administration=delivery.administration,
            file=delivery.original_name,
            sha256=run.get("sha256"),
            outcome=result.status,
            counts=run.get("counts"),
            reason=run.get("reason"),
            archived_path=run.get("archived_path"),
            duration_ms=round(seconds * 1000, 1),
        )
        for observer in self.observers:
            observer(result, delivery, seconds)


def stage_policy(admin: Administration) -> StagePolicy:
    return StagePolicy(admin.kinds, IgnoreLists.from_settings(admin.ignore), admin_zone(admin))


def check_administration(snapshot: Snapshot, admin: Administration) -> None:
    """A file that names another administration than the one it was delivered for is rejected."""
    if snapshot.administration_code not in (None, admin.code):
        raise RejectFile(
            [
                error(
                    "unknown_administration",
                    f"the file is for administration {snapshot.administration_code!r}, "
                    f"but was delivered for {admin.code!r}",
                )
            ]
        )


def admin_zone(admin: Administration) -> ZoneInfo:
    return ZoneInfo(admin.timezone)


def copy_into_claimed(
    config: Config,
    administration: str,
    source: Path,
    now: datetime,
    owner: str,
    name: str | None = None,
    trigger: str = "delivery",
) -> Delivery:
    """For ``ingest`` and ``rejected retry``: copy a file into the private folder under a claimed name (so a
    daemon that finds it there after a crash processes it), then process it as delivered. Its done marker
    ``NAME.done``, when one lies beside it, is copied along and verified."""
    folder = config.claimed_dir / administration
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / make_claimed_name(now, owner, source.name)
    shutil.copyfile(source, target)
    marker = source.with_name(source.name + MARKER_SUFFIX)
    claimed_marker = None
    if marker.is_file():  # a done marker beside it (or archived beside it) is verified as in the inbox
        claimed_marker = target.with_name(target.name + MARKER_SUFFIX)
        shutil.copyfile(marker, claimed_marker)
    return Delivery(administration, name or source.name, target, trigger, claimed_marker)
