"""Pure intake decisions: is a name temporary, is a file complete, must it be refused (DESIGN.md "Intake").

Nothing here touches the filesystem or reads a clock; ``gateway.watcher`` observes and passes the facts
and the time in.
"""

from __future__ import annotations

import enum
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath

TEMPORARY_SUFFIXES = (".part", ".tmp", ".filepart")
MARKER_SUFFIX = ".done"
MAX_MARKER_BYTES = 4096
ORPHAN_MARKER_SECONDS = 600.0  # a done marker alone this long is reported (once); it is never processed
TEMPORARY_PREFIXES = (".", "~")
CLAIM_SEPARATOR = "__"
NAME_MAX_BYTES = 255
_KEPT_SUFFIX_MAX = 16
_PREFIX_TIME = "%Y%m%dT%H%M%S%fZ"
_CLAIMED_NAME = re.compile(r"^(\d{8}T\d{12}Z)-([0-9a-f]{8})__(.+)$", re.DOTALL)


def is_temporary_name(name: str) -> bool:
    """An in-progress upload (FORMATS.md §4): never read, never claimed."""
    return name.startswith(TEMPORARY_PREFIXES) or name.lower().endswith(TEMPORARY_SUFFIXES)


def is_marker_name(name: str) -> bool:
    """``NAME.done``: a done marker (FORMATS.md §4), never data."""
    return name.endswith(MARKER_SUFFIX) and len(name) > len(MARKER_SUFFIX)


def marker_name(name: str) -> str:
    return name + MARKER_SUFFIX


def marked_name(marker: str) -> str:
    """The name of the file a marker is for."""
    return marker[: -len(MARKER_SUFFIX)]


class Arrival(enum.Enum):
    """How the gateway learnt about a path."""

    RENAMED = "renamed"  # renamed or moved into place: complete at once
    WRITTEN = "written"  # created, modified or closed after writing: wait for a quiet period
    SEEN = "seen"  # found by a sweep or a hint to look again: no activity implied


def merge_arrival(earlier: Arrival | None, later: Arrival) -> Arrival:
    """Combine two hints for one path, in order: the later one wins, but a sweep sighting adds nothing."""
    if earlier is not None and later is Arrival.SEEN:
        return earlier
    return later


class Readiness(enum.Enum):
    WAIT = "wait"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class Signature:
    """What a file looks like from the outside: unchanged signature + time passing = quiet."""

    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Observation:
    """``since``: the monotonic time the gateway first saw ``signature`` (or the last write activity)."""

    signature: Signature
    since: float
    arrival: Arrival


def decide_readiness(observation: Observation, current: Signature, now: float, settle_seconds: float) -> Readiness:
    """Ready when renamed into place, or when quiet for ``settle_seconds`` since the gateway first saw it.

    A ``current`` signature that differs from the observed one means the file changed: wait.
    """
    if current != observation.signature:
        return Readiness.WAIT
    if observation.arrival is Arrival.RENAMED:
        return Readiness.READY
    return Readiness.READY if now - observation.since >= settle_seconds else Readiness.WAIT


def ready_at(observation: Observation, settle_seconds: float) -> float:
    """The monotonic time at which an unchanged file becomes ready."""
    if observation.arrival is Arrival.RENAMED:
        return observation.since
    return observation.since + settle_seconds


def next_observation(previous: Observation | None, signature: Signature, arrival: Arrival, now: float) -> Observation:
    """Fold one sighting into what was known: any change, or any write activity, restarts the quiet period."""
    if previous is None:
        return Observation(signature, now, arrival)
    if arrival is Arrival.RENAMED:
        return Observation(signature, now, Arrival.RENAMED)
    if arrival is Arrival.WRITTEN:
        return Observation(signature, now, Arrival.WRITTEN)
    if signature != previous.signature:
        return Observation(signature, now, Arrival.WRITTEN)
    return previous


class SettleTracker:
    """Per-path observations of files that are not yet claimed. State only: the time is passed in."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._seen: dict[PurePath, Observation] = {}
        self._parked: set[PurePath] = set()

    def observe(self, path: PurePath, signature: Signature, arrival: Arrival, now: float) -> Observation:
        previous = self._seen.get(path)
        observation = next_observation(previous, signature, arrival, now)
        self._seen[path] = observation
        if observation != previous:
            self._parked.discard(path)
        return observation

    def park(self, path: PurePath) -> None:
        """Keep what is known about ``path`` but stop waking for it (a file waiting for its done marker)."""
        if path in self._seen:
            self._parked.add(path)

    def restart(self, path: PurePath, now: float) -> None:
        """Start the quiet period again (after a claim that failed for a reason that may pass)."""
        previous = self._seen.get(path)
        if previous is not None:
            self._seen[path] = Observation(previous.signature, now, Arrival.WRITTEN)
            self._parked.discard(path)

    def decide(self, path: PurePath, current: Signature, now: float) -> Readiness:
        observation = self._seen.get(path)
        if observation is None:
            return Readiness.WAIT
        return decide_readiness(observation, current, now, self.settle_seconds)

    def get(self, path: PurePath) -> Observation | None:
        return self._seen.get(path)

    def forget(self, path: PurePath) -> None:
        self._seen.pop(path, None)
        self._parked.discard(path)

    def paths(self) -> list[PurePath]:
        return list(self._seen)

    def next_deadline(self) -> float | None:
        """The earliest time a tracked file becomes ready if nothing changes; None when nothing is tracked."""
        times = [ready_at(o, self.settle_seconds) for p, o in self._seen.items() if p not in self._parked]
        return min(times) if times else None


def decide_refusal(mode: int, nlink: int) -> str | None:
    """The reason to refuse an inbox entry, from its lstat (never follow a link); None when acceptable."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if nlink > 1:
        return "hard link"
    return None


class MarkerState(enum.Enum):
    """A data file's done marker, as the watcher found it beside the file."""

    MISSING = "missing"
    NOT_REGULAR = "not_regular"  # a symlink, hard link or special file: refused with its file
    SETTLING = "settling"  # present, still being written or not quiet yet
    READY = "ready"


class Gate(enum.Enum):
    CLAIM = "claim"
    WAIT = "wait"  # the file itself is not complete yet
    WAIT_FOR_MARKER = "wait_for_marker"  # complete, but its marker is missing or not complete
    REFUSE = "refuse"  # claimed with its marker and refused without being read


def decide_gate(require_marker: bool, file: Readiness, marker: MarkerState) -> Gate:
    """May a complete-looking file be claimed? With ``require_done_marker`` only once ``NAME.done`` is there
    and complete too (the settle rules apply to both)."""
    if file is not Readiness.READY:
        return Gate.WAIT
    if not require_marker:
        return Gate.CLAIM
    if marker is MarkerState.NOT_REGULAR:
        return Gate.REFUSE
    if marker is MarkerState.READY:
        return Gate.CLAIM
    return Gate.WAIT_FOR_MARKER


_SHA256_WORD = re.compile(rb"(?<![0-9A-Za-z])[0-9A-Fa-f]{64}(?![0-9A-Za-z])")


def decide_marker_content(content: bytes, sha256: str) -> tuple[str, str] | None:
    """(code, message) when a done marker condemns its file; None when it is empty or its SHA-256 matches.

    A marker is empty (whitespace only) or holds the file's SHA-256 once: the bare hex digest, or the line
    ``sha256sum`` or ``shasum -a 256`` (GNU or BSD style) prints for the file.
    """
    if len(content) > MAX_MARKER_BYTES:
        return "done_marker_invalid", (
            f"the done marker holds {len(content):,} bytes; it must be empty or hold the file's SHA-256"
        )
    if not content.strip():
        return None
    digests = {d.lower().decode("ascii") for d in _SHA256_WORD.findall(content)}
    if len(digests) != 1:
        return "done_marker_invalid", (
            "the done marker is neither empty nor holds one SHA-256 (64 hexadecimal digits); the file was not imported"
        )
    expected = digests.pop()
    if expected != sha256:
        return "done_marker_mismatch", (
            f"the file is corrupt or incomplete: its SHA-256 is {sha256}, but its done marker says {expected}; "
            "deliver the file again"
        )
    return None


def is_orphan_marker_due(alone_since: float, now: float, after_seconds: float = ORPHAN_MARKER_SECONDS) -> bool:
    """A done marker without its file is reported once it has been alone ``after_seconds``."""
    return now - alone_since >= after_seconds


class Place(enum.Enum):
    CANDIDATE = "candidate"  # a direct entry of inbox/<CODE>/ of a configured administration
    TEMPORARY = "temporary"  # the same, with a temporary name: never read
    UNKNOWN_ADMINISTRATION = "unknown_administration"  # a direct entry of inbox/<NOT CONFIGURED>/
    TOP_LEVEL = "top_level"  # a direct entry of inbox/ (an administration folder, or a stray file)
    NESTED = "nested"  # deeper than inbox/<CODE>/: not ours to process
    OUTSIDE = "outside"  # not under the inbox at all


@dataclass(frozen=True, slots=True)
class Location:
    place: Place
    administration: str = ""
    name: str = ""


def locate(inbox: PurePath, path: PurePath, administrations: Collection[str]) -> Location:
    """Where ``path`` sits relative to the inbox; administration codes match case-sensitively."""
    try:
        parts = path.relative_to(inbox).parts
    except ValueError:
        return Location(Place.OUTSIDE)
    if not parts or ".." in parts:
        return Location(Place.OUTSIDE)
    if len(parts) == 1:
        return Location(Place.TOP_LEVEL, name=parts[0])
    if len(parts) > 2:
        return Location(Place.NESTED, administration=parts[0], name=parts[-1])
    code, name = parts
    if code not in administrations:
        return Location(Place.UNKNOWN_ADMINISTRATION, code, name)
    if is_temporary_name(name):
        return Location(Place.TEMPORARY, code, name)
    return Location(Place.CANDIDATE, code, name)


def _escape(name: str) -> str:
    """A member of an archive is named ``archive.zip/member``: '/' (and '%') are escaped in claimed names."""
    return name.replace("%", "%25").replace("/", "%2F")


def _unescape(name: str) -> str:
    return re.sub(r"%(25|2F)", lambda m: "%" if m.group(1) == "25" else "/", name)


def make_claimed_name(received_at: datetime, token: str, original_name: str) -> str:
    """``<UTC time>-<token>__<original name>``, shortened (keeping a short extension) to fit NAME_MAX with
    room for a done marker's suffix (``<claimed name>.done``)."""
    if not re.fullmatch(r"[0-9a-f]{8}", token):
        raise ValueError(f"claim token must be 8 lowercase hex digits, got {token!r}")
    prefix = f"{received_at.astimezone(UTC).strftime(_PREFIX_TIME)}-{token}{CLAIM_SEPARATOR}"
    room = NAME_MAX_BYTES - len(prefix) - len(MARKER_SUFFIX)
    stem, dot, extension = original_name.rpartition(".")
    if dot and stem and len(extension) <= _KEPT_SUFFIX_MAX and "/" not in extension:
        suffix = dot + extension
    else:
        stem, suffix = original_name, ""
    while stem and len(os.fsencode(_escape(stem + suffix))) > room:
        stem = stem[:-1]
    return prefix + _escape(stem + suffix)


def parse_claimed_name(name: str) -> tuple[datetime, str] | None:
    """(received_at, original name) from a name made by ``make_claimed_name``; None for any other name."""
    match = _CLAIMED_NAME.match(name)
    if match is None:
        return None
    try:
        received = datetime.strptime(match.group(1), _PREFIX_TIME)
    except ValueError:
        return None
    return received.replace(tzinfo=UTC), _unescape(match.group(3))


def claimed_owner(name: str) -> str | None:
    """The token of the instance that claimed a file (``gateway.instances``), from its claimed name."""
    match = _CLAIMED_NAME.match(name)
    return None if match is None else match.group(2)


def with_owner(name: str, token: str) -> str:
    """A claimed name (or its marker's name) handed over to the instance ``token``."""
    if _CLAIMED_NAME.match(name) is None or not re.fullmatch(r"[0-9a-f]{8}", token):
        raise ValueError(f"not a claimed name or not a token: {name!r}, {token!r}")
    stamp, _, rest = name.partition("-")
    return f"{stamp}-{token}{rest[8:]}"
