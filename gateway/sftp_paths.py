"""Pure path decisions of the embedded SFTP server: what an account sees, and where a client path points.

An account's view is virtual. With one administration its root is that administration's upload folder
(``inbox/<CODE>/``) plus a read-only ``feedback/``; with several, the root holds one folder per code plus
``feedback/<CODE>/``. Every client path is normalised against the virtual root first (``..`` can never
climb above it, an absolute path is read inside it), then mapped to a folder and one plain file name. Nothing
deeper exists, so there is nothing to escape into; the shell opens files relative to the folder with
``O_NOFOLLOW`` so that a symlink placed in a folder is never followed either.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

FEEDBACK = "feedback"
INTERNAL_PREFIX = ".payt-gateway-"  # the server's own temporary names; no client may touch them
NAME_MAX_BYTES = 255


class Area(enum.Enum):
    ROOT = "root"  # the list of folders (several administrations)
    UPLOADS = "uploads"  # inbox/<code>/
    FEEDBACK_ROOT = "feedback_root"  # feedback/ holding one folder per code (several administrations)
    FEEDBACK = "feedback"  # the feedback files of <code>


@dataclass(frozen=True)
class Place:
    area: Area
    code: str | None = None
    name: str | None = None  # a file inside the folder; None: the folder itself

    @property
    def writable(self) -> bool:
        return self.area is Area.UPLOADS


def normalize(path: str) -> str:
    """The virtual absolute path (``/`` is the account's root); ``..`` stops at the root."""
    return posixpath.normpath("/" + path.lstrip("/"))


def is_acceptable_name(name: str) -> bool:
    """A file name a client may create: one component, not reserved, not too long, no control characters."""
    if not name or name in (".", "..") or "/" in name or name.startswith(INTERNAL_PREFIX):
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return False
    return len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX_BYTES


def resolve(path: str, codes: Sequence[str]) -> Place | None:
    """Where ``path`` points for an account holding ``codes``; None: nowhere (no such file or folder)."""
    parts = [p for p in normalize(path).split("/") if p]
    if len(codes) == 1:
        code = codes[0]
        if not parts:
            return Place(Area.UPLOADS, code)
        if parts[0] == FEEDBACK:
            return _file_in(Area.FEEDBACK, code, parts[1:])
        return _file_in(Area.UPLOADS, code, parts)
    if not parts:
        return Place(Area.ROOT)
    if parts[0] == FEEDBACK:
        if len(parts) == 1:
            return Place(Area.FEEDBACK_ROOT)
        return _file_in(Area.FEEDBACK, parts[1], parts[2:]) if parts[1] in codes else None
    return _file_in(Area.UPLOADS, parts[0], parts[1:]) if parts[0] in codes else None


def _file_in(area: Area, code: str, rest: Sequence[str]) -> Place | None:
    if not rest:
        return Place(area, code)
    if len(rest) == 1 and is_acceptable_name(rest[0]):
        return Place(area, code, rest[0])
    return None


def folder_entries(place: Place, codes: Sequence[str]) -> list[str]:
    """The virtual folders listed inside ``place`` besides its real files."""
    if place.area is Area.ROOT:
        return [*codes, FEEDBACK]
    if place.area is Area.FEEDBACK_ROOT:
        return list(codes)
    if place.area is Area.UPLOADS and place.name is None and len(codes) == 1:
        return [FEEDBACK]
    return []


def display_path(place: Place, codes: Sequence[str]) -> str:
    """The virtual path of ``place`` as the client sees it."""
    single = len(codes) == 1
    parts: list[str] = []
    if place.area is Area.UPLOADS and not single:
        parts.append(place.code or "")
    elif place.area is Area.FEEDBACK_ROOT:
        parts.append(FEEDBACK)
    elif place.area is Area.FEEDBACK:
        parts += [FEEDBACK] if single else [FEEDBACK, place.code or ""]
    if place.name:
        parts.append(place.name)
    return "/" + "/".join(parts)
