"""Pure decisions about a delivered archive (``*.zip``, ``*.gz``): which members are taken, and when the
archive is refused as a whole (FORMATS.md §4, DOMAIN.md §4). ``gateway.unpack`` reads the listing, asks
here, and extracts.

The rules:

- Only files are taken; folders inside are ignored and their files flattened to their base name. Hidden
  and temporary names (``.x``, ``~x``, ``x.part``, ``__MACOSX/…``) and done markers (``x.done``) are
  ignored like in a watch folder; each ignored entry is a notice on the archive's run.
- The archive is accepted or refused **as a whole**: one refused member (a name with ``..``, an absolute
  path, a link or special file, an encrypted member, an unknown compression method, two members with the
  same base name) or one limit exceeded (member count, total size, compression ratio) rejects the archive
  with every problem listed, and nothing of it is taken. An archive travels as one unit (open items and
  their documents): half of it is worse than none, and the intermediary fixes all problems at once.
- Limits (never trusting a header alone: ``gateway.unpack`` also stops writing when the real output exceeds
  them): at most ``MAX_MEMBERS`` entries, ``MAX_TOTAL_BYTES`` uncompressed in all, and per member at most
  ``MAX_RATIO`` times its compressed size (members up to ``RATIO_FLOOR_BYTES`` are never refused for
  their ratio: a small repetitive CSV compresses very well).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.intake import is_marker_name, is_temporary_name
from gateway.records import Problem, error, notice

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 2 * 1024**3
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 1024**2
MAX_DIRECTORY_BYTES = 16 * 1024**2  # a zip's central directory is read into memory: bound it
MEMBER_SEPARATOR = "/"  # the delivered name of a member: "<archive name>/<member base name>"
_IGNORED_FOLDERS = ("__MACOSX",)


@dataclass(frozen=True)
class Limits:
    members: int = MAX_MEMBERS
    total_bytes: int = MAX_TOTAL_BYTES
    ratio: int = MAX_RATIO
    ratio_floor: int = RATIO_FLOOR_BYTES

    def member_cap(self, compressed: int) -> int:
        """The most bytes a member of ``compressed`` bytes may expand to."""
        return max(self.ratio * compressed, self.ratio_floor)


class EntryType(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"  # a device, FIFO or socket entry


@dataclass(frozen=True)
class Entry:
    """One entry of an archive's listing, as its header describes it."""

    name: str
    type: EntryType = EntryType.FILE
    size: int | None = None  # declared uncompressed size; None when the format has none (gzip)
    compressed: int = 0
    encrypted: bool = False
    readable_method: bool = True  # the compression method is one we can decompress


@dataclass(frozen=True)
class Take:
    index: int  # position in the listing
    name: str  # the base name the member is delivered under (inside the archive's name)
    cap: int  # bytes the extraction may write for it before it stops


@dataclass(frozen=True)
class Plan:
    take: tuple[Take, ...]
    errors: tuple[Problem, ...]  # any error rejects the archive as a whole
    notices: tuple[Problem, ...]


def path_parts(name: str) -> list[str]:
    """The components of a member name; a backslash counts as a separator (archives made on Windows)."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def name_problem(name: str) -> tuple[str, str] | None:
    """(code, reason) when a member's name is unsafe as it stands; None when it may be taken."""
    if "\x00" in name:
        return "member_bad_name", "its name contains a NUL character"
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) >= 2 and normal[1] == ":" and normal[0].isalpha()):
        return "member_absolute_path", "its name is an absolute path"
    if ".." in normal.split("/"):
        return "member_path_traversal", "its name climbs out of the archive with '..'"
    if not path_parts(name):
        return "member_bad_name", "its name is empty"
    return None


def decide_members(entries: Sequence[Entry], limits: Limits) -> Plan:
    """Which members to take, what to ignore, and every reason to refuse the archive (see the module)."""
    if len(entries) > limits.members:
        problem = error(
            "archive_too_many_members",
            f"the archive has {len(entries):,} entries; at most {limits.members:,} are unpacked",
        )
        return Plan((), (problem,), ())
    errors: list[Problem] = []
    notices: list[Problem] = []
    candidates: list[tuple[int, Entry, str]] = []
    for index, entry in enumerate(entries):
        label = repr(entry.name)
        bad = name_problem(entry.name)
        if bad is not None:
            errors.append(error(bad[0], f"member {label} is refused: {bad[1]}"))
            continue
        parts = path_parts(entry.name)
        base = parts[-1]
        if entry.type is EntryType.DIRECTORY:
            continue  # folders are ignored; their files are flattened
        if entry.type is EntryType.SYMLINK:
            errors.append(error("member_link", f"member {label} is refused: it is a symbolic link"))
            continue
        if entry.type is EntryType.OTHER:
            errors.append(error("member_not_regular", f"member {label} is refused: it is not a regular file"))
            continue
        if parts[0] in _IGNORED_FOLDERS or is_temporary_name(base) or is_marker_name(base):
            notices.append(notice("member_ignored", f"member {label} is ignored (a hidden, temporary or marker name)"))
            continue
        if entry.encrypted:
            errors.append(error("member_encrypted", f"member {label} is refused: it is encrypted"))
            continue
        if not entry.readable_method:
            errors.append(
                error("member_compression", f"member {label} is refused: its compression method is not supported")
            )
            continue
        candidates.append((index, entry, base))
    errors += _collisions(candidates)
    errors += _size_problems(candidates, limits)
    take = tuple(
        Take(index, base, min(limits.member_cap(entry.compressed), limits.total_bytes))
        for index, entry, base in candidates
    )
    return Plan(() if errors else take, tuple(errors), tuple(notices))


def _collisions(candidates: Sequence[tuple[int, Entry, str]]) -> list[Problem]:
    seen: dict[str, list[str]] = {}
    for _index, entry, base in candidates:
        seen.setdefault(base, []).append(entry.name)
    return [
        error(
            "member_name_collision",
            f"{len(names)} members are named {base!r} ({', '.join(repr(n) for n in names)}); folders inside an "
            "archive are ignored, so their names collide",
        )
        for base, names in seen.items()
        if len(names) > 1
    ]


def _size_problems(candidates: Sequence[tuple[int, Entry, str]], limits: Limits) -> list[Problem]:
    problems: list[Problem] = []
    total = 0
    for _index, entry, _base in candidates:
        if entry.size is None:
            continue
        total += entry.size
        if entry.size > limits.member_cap(entry.compressed):
            problems.append(
                error(
                    "member_ratio",
                    f"member {entry.name!r} expands from {entry.compressed:,} to {entry.size:,} bytes, more than "
                    f"{limits.ratio}:1 (a zip bomb?)",
                )
            )
    if total > limits.total_bytes:
        problems.append(
            error(
                "archive_too_large",
                f"the archive's members hold {total:,} bytes uncompressed; at most {limits.total_bytes:,} are unpacked",
            )
        )
    return problems


def gzip_member_name(archive_name: str) -> str:
    """The name of a ``.gz`` file's content: its own name without ``.gz`` (the header's name is not used)."""
    lower = archive_name.lower()
    for suffix in (".gz", ".gzip"):
        if lower.endswith(suffix) and len(archive_name) > len(suffix):
            return archive_name[: -len(suffix)]
    return archive_name


def member_display_name(archive_name: str, member: str) -> str:
    return f"{archive_name}{MEMBER_SEPARATOR}{member}"


def nested_archive_error(member_name: str) -> Problem:
    """An archive inside an archive is not unpacked: one level is enough for any exporter we know of."""
    base = member_name.rsplit(MEMBER_SEPARATOR, 1)[-1]
    return error(
        "nested_archive",
        f"{base!r} is an archive inside an archive and is not unpacked (one level only); deliver it on its own",
    )


def is_member(original_name: str) -> bool:
    """True for a file that came out of an archive: a delivered file's own name never holds a '/'."""
    return MEMBER_SEPARATOR in original_name
