"""Parse a large file in a second process while this one writes the stage tables.

Parsing and validating (pure Python) and the database writes each take about half of a large import; on
a machine with two or more cores they overlap. The worker (``python -m gateway.parse_worker``) gets the
open file as an inherited descriptor and a pickled job on stdin: the parse function (a module-level
function), the administration's settings and the stage policy. It runs the same code as an import in
one process (the parser, then ``StageRows``) and writes length-prefixed frames to stdout:

- ``start``: the snapshot's administration code and detected settings (the header has been read);
- ``batch``: stage rows (marshal when the rows allow it, else pickle);
- ``end``: the snapshot's problems, blocked keys, row count and the rows left out on purpose;
- ``reject``: the ``RejectFile`` problems of a file error; ``crash``: an unexpected exception.

The parent turns these back into a ``Snapshot`` and batches (``WorkerRows``), so that staging, reconcile
and the run ledger are exactly as for an import in one process. The worker opens the file anew through the
inherited descriptor (``/proc/self/fd``): it reads at its own offset, so the parent can start it first and
then hash and sniff the same open file while the worker starts and reads the header. Nothing is written by
the worker: a crash of either process before the commit leaves nothing applied. If the parent dies, the
worker's next write fails (broken pipe) and it exits; the parent kills the worker when it stops reading early.
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from gateway.config import Administration
from gateway.errors import RejectFile
from gateway.formats import parse_csv
from gateway.records import Snapshot
from gateway.stage_rows import Batch, StagePolicy, StageRows

ParseFn = Callable[[BinaryIO, Administration], Snapshot]
HEADER = struct.Struct("<cI")  # frame encoding (b"M" marshal, b"P" pickle) and payload length
MIN_BYTES = 8 << 20  # smaller files are parsed in the importing process (the worker's start-up is ~0.2 s)
# The formats measured to gain from a worker. For a large payt-xml file the worker starts a third process,
# the schema validator (``parsers.payt_xml_worker``), and reads the entries without the schema meanwhile.
WORKER_FORMATS = frozenset({"payt-csv", "payt-xml"})
PROC_FDS = "/proc/self/fd"
FRAMES_AHEAD = 4  # frames the worker may have ready before the parent takes them
# The worker's garbage collector: a young collection after 100,000 new objects rather than 700. A 1M-row file
# made ~1,000 young and ~90 middle collections, each scanning the rows in hand; the worker is the import's
# critical path on a fast machine. callgrind, 100k rows: 7,931.8M -> 7,805.3M instructions (-1.6 %). Cycles are
# still collected; the worker lives for one file.
GC_THRESHOLD = (100_000, 10, 10)


class _FewerCollections:
    """The importing process's young threshold raised to the worker's while it reads a worker's frames: each row
    arrives as ~17 new objects that die once their batch is staged, and a 1M-row import ran ~1,200 collections
    (0.44 s of its CPU; it is one of the two busy processes). Counted, so that overlapping readers (threads of
    the daemon) restore the threshold only when the last one is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._saved: tuple[int, ...] = ()  # the threshold to restore, taken when the first reader starts

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._readers:
                self._saved = gc.get_threshold()
                gc.set_threshold(GC_THRESHOLD[0], *self._saved[1:])
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if not self._readers:
                    gc.set_threshold(*self._saved)


fewer_collections = _FewerCollections()


class ParseWorkerError(RuntimeError):
    """The worker failed without a file error: a bug, or it was killed."""


@dataclass(frozen=True)
class Job:
    parse: ParseFn
    admin: Administration
    policy: StagePolicy
    naive_utc: bool
    fd: int
    offset: int


def worth_a_worker(stream: BinaryIO, parse: ParseFn, min_bytes: int | None) -> bool:
    """A worker pays off for a large regular file on a machine with more than one core; it can run
    only a parse function that pickles (a module-level function)."""
    if min_bytes is None or (os.cpu_count() or 1) < 2:
        return False
    try:
        pickle.dumps(parse)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    try:
        return os.fstat(stream.fileno()).st_size - stream.tell() >= min_bytes
    except (AttributeError, OSError, ValueError):  # not a real file (an in-memory stream)
        return False


# -- the parent side ---------------------------------------------------------------------------------------


class WorkerRows:
    """The rows of a snapshot that a worker process parses; the same interface as ``LocalRows``.

    The worker starts on the file from its current offset when the constructor returns; the parent may
    read the file meanwhile. ``snapshot`` waits for the header (a file error raises ``RejectFile`` there); its
    problems, blocked keys and row count are complete after ``batches()``.
    """

    def __init__(self, stream: BinaryIO, parse: ParseFn, admin: Administration, policy: StagePolicy, naive_utc: bool):
        job = pickle.dumps(Job(parse, admin, policy, naive_utc, stream.fileno(), stream.tell()))
        self.blocked_invoices: set[str] = set()
        self.ignored = 0
        self._snapshot: Snapshot | None = None
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.parse_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(stream.fileno(),),
        )
        try:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(job)
            self._proc.stdin.close()
            self._out = self._proc.stdout
        except BaseException:
            self.close()
            raise

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            kind, code, detected = self._next()
            if kind != "start":
                raise ParseWorkerError(f"the parse worker sent {kind!r} before 'start'")
            self._snapshot = Snapshot(administration_code=code, detected=detected)
        return self._snapshot

    def batches(self) -> Iterator[Batch]:
        snapshot = self.snapshot
        with fewer_collections():
            while True:
                message = self._next()
                if message[0] != "batch":
                    break
                yield message[1], message[2]
        if message[0] != "end":
            raise ParseWorkerError(f"the parse worker sent {message[0]!r} instead of a batch")
        _, problems, blocked_invoices, blocked_debtors, rows, explicit_empty, stage_blocked, ignored = message
        snapshot.problems.extend(problems)
        snapshot.blocked_invoices.update(blocked_invoices)
        snapshot.blocked_debtors.update(blocked_debtors)
        snapshot.rows, snapshot.explicit_empty = rows, explicit_empty
        self.blocked_invoices.update(stage_blocked)
        self.ignored = ignored

    def _next(self) -> tuple[Any, ...]:
        header = self._out.read(HEADER.size)
        if len(header) < HEADER.size:
            raise ParseWorkerError(f"the parse worker ended without a result (exit status {self._proc.wait()})")
        encoding, size = HEADER.unpack(header)
        payload = self._out.read(size)
        if len(payload) < size:
            raise ParseWorkerError(f"the parse worker ended mid-frame (exit status {self._proc.wait()})")
        message: tuple[Any, ...] = marshal.loads(payload) if encoding == b"M" else pickle.loads(payload)
        if message[0] == "reject":
            raise RejectFile(message[1])
        if message[0] == "crash":
            raise ParseWorkerError(f"the parse worker failed: {message[1]}\n{message[2]}")
        return message

    def close(self) -> None:
        """Stop the worker (if it still runs) and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> WorkerRows:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# -- the worker side ---------------------------------------------------------------------------------------


class FrameWriter:
    """The worker's stdout, written by a thread: the worker reads on while the parent has yet to take the
    frames in hand (a pipe holds 64 KiB; a batch is ~1 MB). At most ``depth`` frames wait; a write error
    (the parent is gone) is raised by the next ``write`` or by ``flush``."""

    def __init__(self, out: BinaryIO, depth: int = FRAMES_AHEAD):
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_all, name="frames", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def flush(self) -> None:
        """Wait until every frame is written."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
        self._out.flush()

    def _write_all(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._out.write(data)
                except BaseException as exc:  # handed to the worker's thread by write() or flush()
                    self._error = exc


def _send(out: BinaryIO | FrameWriter, message: tuple[Any, ...]) -> None:
    try:
        payload, encoding = marshal.dumps(message), b"M"
    except ValueError:  # a datetime (sent_at) or a Problem: not a marshal type
        payload, encoding = pickle.dumps(message, pickle.HIGHEST_PROTOCOL), b"P"
    out.write(HEADER.pack(encoding, len(payload)) + payload)


def own_offsets() -> bool:
    """Whether a worker can open its file anew (``/proc/self/fd``), so that the parent may read the file
    while the worker does (the pipeline starts a worker early only then)."""
    return os.path.isdir(PROC_FDS)


def reopen(fd: int) -> BinaryIO:
    """The inherited file, opened anew: the same file (even if renamed or removed meanwhile), at an offset of
    its own rather than the one this descriptor shares with the parent. Without ``/proc`` (``own_offsets``),
    the inherited descriptor itself: the parent then starts the worker only once it has done reading."""
    if not own_offsets():
        return os.fdopen(fd, "rb")
    try:
        own = os.open(f"{PROC_FDS}/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    return os.fdopen(own, "rb")


def _stage_rows(job: Job, stream: BinaryIO, rows: StageRows) -> tuple[Snapshot, Iterable[Batch]]:
    """The snapshot and its stage rows: a payt-csv file read column-wise where its blocks are clean
    (``gateway.csv_columnar``, which imports polars: only the worker does), any other file by its parser."""
    if job.parse is parse_csv:
        from gateway.csv_columnar import ColumnarRead

        read = ColumnarRead(stream, job.admin, rows)
        return read.snapshot, read.batches()
    snapshot = job.parse(stream, job.admin)
    return snapshot, rows.batches(snapshot.entries)


def run(job: Job, out: BinaryIO | FrameWriter) -> None:
    """Parse ``job``'s file and send its stage rows: the worker's whole work."""
    try:
        with reopen(job.fd) as stream:
            stream.seek(job.offset)
            rows = StageRows(job.policy, job.naive_utc)
            snapshot, batches = _stage_rows(job, stream, rows)
            _send(out, ("start", snapshot.administration_code, snapshot.detected))
            for invoice_rows, version_rows in batches:
                _send(out, ("batch", invoice_rows, version_rows))
            _send(
                out,
                (
                    "end",
                    snapshot.problems,
                    sorted(snapshot.blocked_invoices),
                    sorted(snapshot.blocked_debtors),
                    snapshot.rows,
                    snapshot.explicit_empty,
                    sorted(rows.blocked_invoices),
                    rows.ignored,
                ),
            )
    except RejectFile as exc:
        _send(out, ("reject", exc.problems))
    except Exception as exc:
        _send(out, ("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    out.flush()


def main() -> None:
    gc.set_threshold(*GC_THRESHOLD)
    job = pickle.load(sys.stdin.buffer)
    out = FrameWriter(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)  # a stray print goes to stderr, never into the frames
    try:
        run(job, out)
    except BrokenPipeError:  # the parent is gone: nothing to report to
        os._exit(1)


if __name__ == "__main__":
    main()
