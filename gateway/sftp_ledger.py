"""The upload ledger of the SFTP server, kept off the request path, and the per-account quota.

Which account uploaded, renamed or removed which file is queued in memory (before the file is renamed into
the inbox) and written to ``sftp_uploads`` in batches by one thread, every ``interval`` seconds; ``flush``
writes the queue at once, in order, consecutive uploads with one ``executemany`` per statement. The feedback
hook flushes before it looks a run's upload up, so it always finds an upload whose file the intake took. A
crash can lose the last fraction of a second of ledger entries: those files are still imported, only their
feedback file is missing.

Quota: the bytes of an account's uploads in progress (in memory) plus those uploaded and not yet imported
(from the database, re-read at most every ``refresh`` seconds, plus what was committed since).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.errors import TransientError
from gateway.sftp_accounts import Account, Upload, forget_upload, pending_bytes, record_uploads, rename_upload
from gateway.store import transaction

log = structlog.get_logger("gateway.sftp")
Op = Callable[[Connection], None]


class UploadLedger:
    def __init__(self, engine: Engine, clock: Callable[[], datetime], interval: float = 0.25, refresh: float = 2.0):
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.refresh = refresh
        self._lock = threading.Lock()  # the queue and the quota maps
        self._flush_lock = threading.Lock()  # one writer at a time, in queue order
        self._queue: list[Op | Upload] = []
        self._in_flight: dict[int, int] = {}
        self._committed: dict[int, tuple[int, float]] = {}  # account -> (bytes pending, monotonic time read)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sftp-ledger")

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self.flush()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.flush()
            except TransientError as exc:
                log.warning("sftp_ledger_deferred", reason=str(exc))

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                ops, self._queue = self._queue, []
            if not ops:
                return
            try:
                with transaction(self.engine) as conn:
                    _write(conn, ops)
            except BaseException:
                with self._lock:
                    self._queue[:0] = ops  # keep the order; written with the next flush
                raise

    # -- ledger entries -----------------------------------------------------------------------------------

    def uploaded(self, account: Account, code: str, name: str, size: int, sha256: str, address: str) -> None:
        upload = Upload(account.id, account.name, code, name, size, sha256, address, self.clock())
        with self._lock:
            self._queue.append(upload)
            bytes_, at = self._committed.get(account.id, (0, float("-inf")))
            self._committed[account.id] = (bytes_ + size, at)

    def renamed(self, account_id: int, old: tuple[str, str], new: tuple[str, str]) -> None:
        now = self.clock()

        def op(conn: Connection) -> None:
            forget_upload(conn, new[0], new[1], now)
            rename_upload(conn, account_id, old, new)

        with self._lock:
            self._queue.append(op)

    def removed(self, code: str, name: str) -> None:
        now = self.clock()
        with self._lock:
            self._queue.append(lambda conn: forget_upload(conn, code, name, now))

    # -- quota --------------------------------------------------------------------------------------------

    def reserve(self, account_id: int, amount: int, limit: int) -> bool:
        committed = self._committed_bytes(account_id)
        with self._lock:
            current = self._in_flight.get(account_id, 0)
            if committed + current + amount > limit:
                return False
            self._in_flight[account_id] = current + amount
            return True

    def release(self, account_id: int, amount: int) -> None:
        with self._lock:
            left = self._in_flight.get(account_id, 0) - amount
            if left > 0:
                self._in_flight[account_id] = left
            else:
                self._in_flight.pop(account_id, None)

    def _committed_bytes(self, account_id: int) -> int:
        now = time.monotonic()
        with self._lock:
            cached = self._committed.get(account_id)
        if cached is not None and now - cached[1] < self.refresh:
            return cached[0]
        self.flush()
        with transaction(self.engine, write=False) as conn:
            value = pending_bytes(conn, account_id)
        with self._lock:
            self._committed[account_id] = (value, now)
        return value


def _write(conn: Connection, ops: list[Op | Upload]) -> None:
    """The entries in order; a run of uploads with distinct names as one batch."""
    batch: dict[tuple[str, str], Upload] = {}
    for op in ops:
        if isinstance(op, Upload) and (op.administration, op.file_name) not in batch:
            batch[(op.administration, op.file_name)] = op
            continue
        if batch:
            record_uploads(conn, list(batch.values()))
            batch = {}
        if isinstance(op, Upload):
            batch[(op.administration, op.file_name)] = op
        else:
            op(conn)
    if batch:
        record_uploads(conn, list(batch.values()))
