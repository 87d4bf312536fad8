"""The watch-folder intake shell: observe ``inbox/<CODE>/``, claim complete files by an atomic rename.

Watchdog handler threads only record what happened (under a lock) and wake the worker. The worker calls
``wait`` and ``take_ready``: it looks at the files (lstat, never following a link), lets ``gateway.intake``
decide, and renames ready files into ``claimed/<CODE>/``. Nothing is opened here except by
``open_claimed``, which the pipeline uses on a claimed path.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ClassVar

import structlog
from watchdog import events as ev
from watchdog.observers.api import BaseObserver

from gateway.config import Config
from gateway.errors import ConfigError, GatewayError
from gateway.instances import ProcessLease, dead_lease
from gateway.intake import (
    MARKER_SUFFIX,
    ORPHAN_MARKER_SECONDS,
    Arrival,
    Gate,
    MarkerState,
    Place,
    Readiness,
    SettleTracker,
    Signature,
    claimed_owner,
    decide_gate,
    decide_refusal,
    is_marker_name,
    is_orphan_marker_due,
    is_temporary_name,
    locate,
    make_claimed_name,
    marked_name,
    marker_name,
    merge_arrival,
    parse_claimed_name,
    with_owner,
)

_FILE_EVENTS = (ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileAttribEvent, ev.FileClosedEvent, ev.FileMovedEvent)
_EVENT_FILTER: list[type[ev.FileSystemEvent]] = [*_FILE_EVENTS, ev.FileDeletedEvent]
_EVENT_FILTER += [ev.DirCreatedEvent, ev.DirMovedEvent, ev.DirDeletedEvent]  # not opened/closed-unwritten/modified
_WAKE_MARGIN = 0.01  # wake a little after a settle deadline, so the file is ready when looked at


@dataclass(frozen=True)
class Claimed:
    administration: str
    original_name: str
    path: Path
    received_at: datetime
    marker: Path | None = None  # its done marker, claimed beside it as ``<path>.done``


@dataclass(frozen=True)
class Refused:
    """A symlink, hard link or non-regular file, renamed (never followed, never opened) into claimed/."""

    administration: str
    original_name: str
    path: Path
    reason: str
    marker: Path | None = None


class ClaimedFileError(GatewayError, OSError):
    """A claimed path is not one plain regular file with a single link: it must not be read.

    An ``OSError`` too (``strerror`` says why), so a caller that handles unreadable files handles this.
    """

    _ERRNO: ClassVar[dict[str, int]] = {"symlink": errno.ELOOP, "hard link": errno.EMLINK, "missing": errno.ENOENT}

    def __init__(self, path: Path, reason: str, code: int | None = None):
        super().__init__(code or self._ERRNO.get(reason, errno.EINVAL), f"refused to open ({reason})", str(path))
        self.path = path
        self.reason = reason


def open_claimed(path: Path) -> BinaryIO:
    """Open a claimed file for reading without following a symlink; refuse anything but one regular file.

    lstat first (a FIFO or device is never opened), then open with O_NOFOLLOW (and O_NONBLOCK, so a FIFO
    swapped in cannot block), then fstat: the same inode, a regular file, one link.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError as exc:
        raise ClaimedFileError(path, "missing") from exc
    reason = decide_refusal(before.st_mode, before.st_nlink)
    if reason:
        raise ClaimedFileError(path, reason)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise ClaimedFileError(path, f"cannot open without following links: {exc.strerror}", exc.errno) from exc
    try:
        st = os.fstat(fd)
        reason = decide_refusal(st.st_mode, st.st_nlink)
        if reason is None and (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            reason = "replaced while opening"
        if reason:
            raise ClaimedFileError(path, reason)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _signature(st: os.stat_result) -> Signature:
    return Signature(st.st_size, st.st_mtime_ns)


def _log() -> structlog.typing.FilteringBoundLogger:
    # Looked up per call: structlog may be configured (or captured in tests) after this instance exists.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger()
    return logger


class _Handler(ev.FileSystemEventHandler):
    def __init__(self, intake: Intake) -> None:
        super().__init__()
        self._intake = intake

    def on_any_event(self, event: ev.FileSystemEvent) -> None:
        self._intake._record_event(event)


class Intake:
    """Watches ``config.inbox_dir`` and claims complete files into ``config.claimed_dir``.

    The owner's worker loop: ``start()``; ``recover_claimed()``; then repeatedly ``wait(timeout)`` and
    ``take_ready()``; finally ``stop()``. ``take_ready`` also sweeps when a sweep is due, and ``wait``
    returns early when a watched file's quiet period ends or a sweep falls due.
    """

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], datetime] = _utc_now,
        orphan_marker_seconds: float = ORPHAN_MARKER_SECONDS,
        lease: ProcessLease | None = None,
    ) -> None:
        self._config = config
        self._own_lease = lease is None
        self._lease = lease or ProcessLease(config.data_dir)
        self._inbox = config.inbox_dir
        self._claimed = config.claimed_dir
        self._codes = frozenset(config.administrations)
        self._marked = frozenset(c for c, a in config.administrations.items() if a.require_done_marker)
        self._orphan_marker_seconds = orphan_marker_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[Path, Arrival] = {}  # guarded by _lock
        self._sweep_requested = False  # guarded by _lock
        self._next_sweep = float("-inf")  # guarded by _lock
        self._observer: BaseObserver | None = None
        self.last_sweep: datetime | None = None  # wall-clock time of the last completed sweep (for /healthz)
        # Worker-thread state (take_ready, wait, recover_claimed):
        self._tracker = SettleTracker(config.settle_seconds)
        self._reported: set[Path] = set()
        self._taken: set[Path] = set()  # files taken over from a dead instance, not yet handed out

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._observer is not None:
            raise RuntimeError("intake already started")
        self._make_folders()
        if os.stat(self._inbox).st_dev != os.stat(self._claimed).st_dev:
            raise ConfigError([f"gateway.data_dir: {self._inbox} and {self._claimed} must be on the same filesystem"])
        observer = _make_observer()
        observer.schedule(_Handler(self), str(self._inbox), recursive=True, event_filter=_EVENT_FILTER)
        observer.start()
        self._observer = observer
        _log().info("inbox_watch_started", inbox=str(self._inbox), administrations=sorted(self._codes))
        self._sweep(wake=True)  # after the watch is up, so nothing arriving in between is missed

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join()
        if self._own_lease:
            self._lease.release()
        self._wake.set()

    def apply(self, config: Config) -> None:
        """A reloaded configuration, applied by the worker between files: inboxes of new administrations are
        made and swept at once; a removed administration's inbox is left as it is (its files are reported as
        ``inbox_unknown_administration`` and stay until it is configured again). Same data_dir only."""
        if config.inbox_dir != self._inbox:
            raise ValueError("intake: data_dir cannot change without a restart")
        self._config = config
        self._codes = frozenset(config.administrations)
        self._marked = frozenset(c for c, a in config.administrations.items() if a.require_done_marker)
        self._tracker.settle_seconds = config.settle_seconds
        self._reported.clear()
        self._make_folders()
        with self._lock:
            self._sweep_requested = True
        self._wake.set()

    def wake(self) -> None:
        """Make a ``wait`` in progress return now (for example to stop); safe from any thread."""
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Block until an event arrives, a watched file's quiet period ends, a sweep is due, or timeout."""
        now = self._clock()
        limit = timeout
        deadline = self._tracker.next_deadline()
        if deadline is not None:
            limit = min(limit, deadline - now + _WAKE_MARGIN)
        with self._lock:
            next_sweep = self._next_sweep
        if next_sweep != float("-inf"):
            limit = min(limit, next_sweep - now + _WAKE_MARGIN)
        if self._wake.wait(max(0.0, limit)):
            self._wake.clear()

    # -- observations (any thread) ----------------------------------------------------------------------

    def sweep(self) -> None:
        """List every inbox folder and record what is there (inotify may overflow; mounts give no events)."""
        self._sweep(wake=True)

    def _sweep(self, *, wake: bool) -> None:
        self._make_folders()
        found: list[Path] = []
        for entry in _scan(self._inbox):
            path = Path(entry.path)
            found.append(path)
            if entry.is_dir(follow_symlinks=False):
                found.extend(Path(sub.path) for sub in _scan(path))
        with self._lock:
            for path in found:
                self._pending[path] = merge_arrival(self._pending.get(path), Arrival.SEEN)
            self._sweep_requested = False
            self._next_sweep = self._clock() + self._config.sweep_seconds
            self.last_sweep = self._wall_clock()
        if wake:
            self._wake.set()

    def _record_event(self, event: ev.FileSystemEvent) -> None:
        """Runs in a watchdog thread: record the hint and wake the worker, nothing else."""
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path)
        hints: list[tuple[Path, Arrival]] = []
        rescan = False
        if isinstance(event, ev.FileMovedEvent):
            hints += [(Path(src), Arrival.SEEN)] if src else []
            hints += [(Path(dest), Arrival.RENAMED)] if dest else []
        elif isinstance(event, ev.FileCreatedEvent | ev.FileModifiedEvent | ev.FileClosedEvent):
            hints.append((Path(src), Arrival.WRITTEN))
        elif isinstance(event, ev.FileDeletedEvent | ev.FileAttribEvent):
            hints.append((Path(src), Arrival.SEEN))
        elif isinstance(event, ev.DirCreatedEvent | ev.DirMovedEvent | ev.DirDeletedEvent):
            # A folder appeared, vanished or moved: its files may have come without events of their own.
            hints += [(Path(p), Arrival.SEEN) for p in (src, dest) if p]
            rescan = True
        else:
            return
        with self._lock:
            for path, arrival in hints:
                self._pending[path] = merge_arrival(self._pending.get(path), arrival)
            self._sweep_requested = self._sweep_requested or rescan
        self._wake.set()

    # -- decisions and claims (the worker thread) -------------------------------------------------------

    def take_ready(self) -> list[Claimed | Refused]:
        with self._lock:
            sweep_due = self._sweep_requested or self._clock() >= self._next_sweep
        if sweep_due:
            self._sweep(wake=False)
        with self._lock:
            pending, self._pending = self._pending, {}
        results: list[Claimed | Refused] = []
        for path in sorted(set(pending) | {Path(p) for p in self._tracker.paths()}):
            result = self._consider(path, pending.get(path, Arrival.SEEN))
            if result is not None:
                results.append(result)
        return results

    def _consider(self, path: Path, arrival: Arrival) -> Claimed | Refused | None:
        location = locate(self._inbox, path, self._codes)
        if location.place is Place.TEMPORARY:
            self._tracker.forget(path)
            return None
        if location.place not in (Place.CANDIDATE, Place.UNKNOWN_ADMINISTRATION, Place.TOP_LEVEL):
            return None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._tracker.forget(path)
            self._reported.discard(path)
            return None
        except OSError as exc:
            _log().warning("inbox_entry_unreadable", path=str(path), error=exc.strerror)
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if location.place is Place.UNKNOWN_ADMINISTRATION:
            if not is_dir and not is_temporary_name(location.name):
                self._report_once(path, "inbox_unknown_administration", administration=location.administration)
            return None
        if location.place is Place.TOP_LEVEL:
            if not is_dir and not is_temporary_name(location.name):
                self._report_once(path, "inbox_entry_ignored", reason="not inside an administration folder")
            return None
        if is_dir:
            self._tracker.forget(path)
            self._report_once(path, "inbox_directory_ignored", administration=location.administration)
            return None
        now = self._clock()
        signature = _signature(st)
        self._tracker.observe(path, signature, arrival, now)
        if is_marker_name(location.name):
            return self._consider_marker(path, location.administration, now)
        required = location.administration in self._marked
        marker = path.with_name(marker_name(location.name))
        gate = decide_gate(required, self._tracker.decide(path, signature, now), self._marker_state(marker, now))
        if gate is Gate.WAIT:
            return None
        if gate is Gate.WAIT_FOR_MARKER:
            self._tracker.park(path)  # woken again by the marker's own events or sweeps
            return None
        return self._claim(
            path, location.administration, location.name, st, now, marker if required else None, gate is Gate.REFUSE
        )

    def _marker_state(self, marker: Path, now: float) -> MarkerState:
        try:
            st = os.lstat(marker)
        except OSError:
            return MarkerState.MISSING
        if decide_refusal(st.st_mode, st.st_nlink) is not None:
            return MarkerState.NOT_REGULAR
        self._tracker.observe(marker, _signature(st), Arrival.SEEN, now)
        if self._tracker.decide(marker, _signature(st), now) is not Readiness.READY:
            return MarkerState.SETTLING
        return MarkerState.READY

    def _consider_marker(self, marker: Path, administration: str, now: float) -> Claimed | Refused | None:
        """A done marker is never data: it lets its file be taken, and is claimed with it."""
        if administration not in self._marked:
            self._tracker.forget(marker)
            self._report_once(marker, "done_marker_ignored", reason="the administration does not require markers")
            return None
        data = marker.with_name(marked_name(marker.name))
        if os.path.lexists(data):
            return self._consider(data, Arrival.SEEN)
        self._tracker.park(marker)
        observation = self._tracker.get(marker)
        if observation is not None and is_orphan_marker_due(observation.since, now, self._orphan_marker_seconds):
            self._report_once(marker, "done_marker_without_file", administration=administration)
        return None

    def _claim(
        self,
        path: Path,
        administration: str,
        name: str,
        seen: os.stat_result,
        now: float,
        marker: Path | None = None,
        refuse_marker: bool = False,
    ) -> Claimed | Refused | None:
        try:
            st = os.lstat(path)  # look again right before the rename
        except FileNotFoundError:
            self._tracker.forget(path)
            _log().info("file_vanished", administration=administration, file=name)
            return None
        if stat.S_ISDIR(st.st_mode) or _signature(st) != _signature(seen):
            self._tracker.observe(path, _signature(st), Arrival.WRITTEN, now)
            return None
        received_at = self._wall_clock()
        folder = self._claimed / administration
        try:
            target = folder / make_claimed_name(received_at, self._lease.token(), name)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.rename(path, target)
        except FileNotFoundError:
            self._tracker.forget(path)
            _log().info("file_vanished", administration=administration, file=name)
            return None
        except OSError as exc:
            self._tracker.restart(path, now)
            _log().error("file_claim_failed", administration=administration, file=name, error=exc.strerror)
            return None
        self._tracker.forget(path)
        claimed_marker = self._claim_marker(marker, target, administration, name) if marker else None
        after = os.lstat(target)  # in our private folder: what we decide on cannot change any more
        if (after.st_dev, after.st_ino) != (st.st_dev, st.st_ino):
            _log().warning("file_replaced_during_claim", administration=administration, file=name)
        reason = decide_refusal(after.st_mode, after.st_nlink)
        if reason is None and refuse_marker:
            reason = "its done marker is a symlink, hard link or special file"
        if reason is not None:
            _log().warning("file_refused", administration=administration, file=name, reason=reason)
            return Refused(administration, name, target, reason, claimed_marker)
        _log().info("file_claimed", administration=administration, file=name, size=after.st_size)
        return Claimed(administration, name, target, received_at, claimed_marker)

    def _claim_marker(self, marker: Path, target: Path, administration: str, name: str) -> Path | None:
        """After its file (a crash in between leaves the marker in the inbox; ``recover_claimed`` takes it)."""
        self._tracker.forget(marker)
        partner = target.with_name(target.name + MARKER_SUFFIX)
        try:
            os.rename(marker, partner)
        except OSError as exc:
            _log().warning("done_marker_vanished", administration=administration, file=name, error=exc.strerror)
            return None
        return partner

    def recover_claimed(self, own: bool = True) -> list[Claimed | Refused]:
        """Files in ``claimed/<CODE>/`` (only names an intake made) that this instance is to process, oldest
        first: its own (``own``: after a deferral) and those a dead instance left, taken over by a rename
        (``gateway.instances``). Files of a live instance are its work and are left alone."""
        found: list[tuple[str, os.DirEntry[str]]] = []
        for folder in sorted(_scan(self._claimed), key=lambda e: e.name):
            if not folder.is_dir(follow_symlinks=False) or folder.name not in self._codes:
                self._report_once(Path(folder.path), "claimed_entry_ignored", reason="no such administration")
                continue
            found += [(folder.name, e) for e in _scan(Path(folder.path))]
        token = self._lease.token()
        owners = {claimed_owner(e.name) for _, e in found} - {None, token}
        taken = 0
        for owner in sorted(o for o in owners if o is not None):
            with dead_lease(self._config.data_dir, owner) as dead:
                if dead:
                    taken += self._take_over([(c, e) for c, e in found if claimed_owner(e.name) == owner], token)
        if taken:
            _log().warning("claimed_files_taken_over", count=taken)
        results: list[Claimed | Refused] = []
        for code in sorted({c for c, _ in found}):
            entries = sorted(_scan(self._claimed / code), key=lambda e: e.name)
            names = {e.name for e in entries}
            for entry in entries:
                parsed = parse_claimed_name(entry.name)
                path = Path(entry.path)
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if parsed is None or stat.S_ISDIR(st.st_mode):
                    self._report_once(path, "claimed_entry_ignored", reason="not named by the intake")
                    continue
                if claimed_owner(entry.name) != token or (not own and path not in self._taken):
                    continue
                self._taken.discard(path)
                if is_marker_name(entry.name):
                    if marked_name(entry.name) not in names:
                        self._report_once(path, "claimed_entry_ignored", reason="a done marker without its file")
                    continue
                received_at, original = parsed
                marker = self._recover_marker(code, original, path, names)
                reason = decide_refusal(st.st_mode, st.st_nlink)
                if reason is not None:
                    results.append(Refused(code, original, path, reason, marker))
                else:
                    results.append(Claimed(code, original, path, received_at, marker))
        if results:
            _log().info("claimed_files_recovered", count=len(results))
        return results

    def _take_over(self, entries: list[tuple[str, os.DirEntry[str]]], token: str) -> int:
        """Rename a dead instance's claimed files to this instance (markers first, so a crash in between
        leaves the marker already beside the file's future name). A rename that finds nothing lost a race."""
        taken = 0
        for _code, entry in sorted(entries, key=lambda ce: not is_marker_name(ce[1].name)):
            target = Path(entry.path).with_name(with_owner(entry.name, token))
            try:
                os.rename(entry.path, target)
            except FileNotFoundError:
                continue
            if not is_marker_name(entry.name):
                self._taken.add(target)
                taken += 1
        return taken

    def _recover_marker(self, code: str, original: str, path: Path, names: set[str]) -> Path | None:
        """The claimed file's marker; one a crash left in the inbox (between the two renames) is claimed now."""
        partner = path.with_name(path.name + MARKER_SUFFIX)
        if partner.name in names:
            return partner
        if code not in self._marked or "/" in original:
            return None
        left = self._inbox / code / marker_name(original)
        try:
            st = os.lstat(left)
        except OSError:
            return None
        if decide_refusal(st.st_mode, st.st_nlink) is not None:
            return None
        return self._claim_marker(left, path, code, original)

    # -- helpers ----------------------------------------------------------------------------------------

    def _report_once(self, path: Path, event: str, **fields: str) -> None:
        if path in self._reported:
            return
        self._reported.add(path)
        _log().warning(event, path=str(path), **fields)

    def _make_folders(self) -> None:
        for code in sorted(self._codes):
            (self._inbox / code).mkdir(parents=True, exist_ok=True)
        self._claimed.mkdir(mode=0o700, parents=True, exist_ok=True)


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
    except OSError as exc:
        _log().warning("inbox_folder_unreadable", path=str(folder), error=exc.strerror)
        return []


def _make_observer() -> BaseObserver:
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver

        # Full events: a file moved in from outside the inbox arrives as a move (complete), not a create.
        return InotifyObserver(generate_full_events=True)
    from watchdog.observers import Observer

    observer: BaseObserver = Observer()
    return observer
