"""Unpacking a delivered ``*.zip`` or ``*.gz``: read the listing, let ``gateway.archive_plan`` decide, extract.

Extraction streams each member into a private work folder and stops writing as soon as the real output
exceeds what the member may produce (its declared size, ``MAX_RATIO`` times its compressed size, what is
left of ``MAX_TOTAL_BYTES``): a header that lies cannot fill the disk. Links are never created (a link member
is refused by the plan; only regular files are written, under names of our own). ``claim_members`` then
renames the extracted files into ``claimed/<CODE>/`` so that, from there on, a crash loses nothing: each
member is a claimed file like any delivered one.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from gateway.archive import fsync_dir
from gateway.archive_plan import (
    MAX_DIRECTORY_BYTES,
    Entry,
    EntryType,
    Limits,
    Plan,
    decide_members,
    gzip_member_name,
    member_display_name,
)
from gateway.errors import RejectFile, TransientError
from gateway.intake import make_claimed_name
from gateway.records import Problem, error
from parsers.detect import Kind

CHUNK = 64 * 1024
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
# What a broken archive makes the standard library raise while reading (never while writing: see _write).
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
)
UNPACKING_FOLDER = "unpacking"  # under data_dir: work folders of archives being unpacked (derived data)


@dataclass(frozen=True)
class Member:
    name: str  # the member's base name
    path: Path  # the extracted file


@dataclass(frozen=True)
class Unpacked:
    members: tuple[Member, ...]
    notices: tuple[Problem, ...]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Exceeded(Exception):
    def __init__(self, written: int):
        self.written = written


def unpack(stream: BinaryIO, kind: Kind, archive_name: str, workdir: Path, limits: Limits | None = None) -> Unpacked:
    """Extract the members of an archive into ``workdir``; ``RejectFile`` when it is refused as a whole."""
    limits = limits or Limits()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if kind is Kind.ZIP:
            return _unpack_zip(stream, workdir, limits)
        if kind is Kind.GZIP:
            return _unpack_gzip(stream, archive_name, workdir, limits)
    except _READ_ERRORS as exc:
        raise RejectFile([error("corrupt_archive", f"the {kind} archive is corrupt or unreadable: {exc}")]) from exc
    raise ValueError(f"not an archive kind: {kind}")


def _unpack_zip(stream: BinaryIO, workdir: Path, limits: Limits) -> Unpacked:
    _check_directory(stream, limits)
    with zipfile.ZipFile(stream) as archive:
        infos = archive.infolist()
        plan = _checked(decide_members([zip_entry(i) for i in infos], limits))
        members: list[Member] = []
        budget = limits.total_bytes
        for number, take in enumerate(plan.take):
            info = infos[take.index]
            cap = min(take.cap, info.file_size, budget)
            with archive.open(info) as source:
                written = _extract(source, workdir / f"{number:05d}", cap, take.name, info.file_size)
            budget -= written
            members.append(Member(take.name, workdir / f"{number:05d}"))
    return Unpacked(tuple(members), plan.notices)


def _unpack_gzip(stream: BinaryIO, archive_name: str, workdir: Path, limits: Limits) -> Unpacked:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    entry = Entry(gzip_member_name(archive_name), EntryType.FILE, None, size)
    plan = _checked(decide_members([entry], limits))
    members: list[Member] = []
    for take in plan.take:
        with gzip.GzipFile(fileobj=stream, mode="rb") as source:
            _extract(source, workdir / "00000", take.cap, take.name, None)
        members.append(Member(take.name, workdir / "00000"))
    return Unpacked(tuple(members), plan.notices)


def _checked(plan: Plan) -> Plan:
    if plan.errors:
        raise RejectFile([*plan.errors, *plan.notices])
    return plan


def _check_directory(stream: BinaryIO, limits: Limits) -> None:
    """Count the entries from the end record before the listing is read into memory."""
    end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
    stream.seek(0)
    if end is None:
        raise zipfile.BadZipFile("no end of central directory record")
    entries, size = int(end[zipfile._ECD_ENTRIES_TOTAL]), int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    if entries > limits.members:
        raise RejectFile(
            [
                error(
                    "archive_too_many_members",
                    f"the archive has {entries:,} entries; at most {limits.members:,} are unpacked",
                )
            ]
        )
    if size > MAX_DIRECTORY_BYTES:
        raise RejectFile(
            [
                error(
                    "archive_too_many_members",
                    f"the archive's listing holds {size:,} bytes; at most {MAX_DIRECTORY_BYTES:,} are read",
                )
            ]
        )


def zip_entry(info: zipfile.ZipInfo) -> Entry:
    """An entry as the plan sees it. The Unix mode (if any) is in the high 16 bits of the external attributes."""
    mode = info.external_attr >> 16
    if info.is_dir() or stat.S_ISDIR(mode):
        kind = EntryType.DIRECTORY
    elif stat.S_ISLNK(mode):
        kind = EntryType.SYMLINK
    elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        kind = EntryType.OTHER
    else:
        kind = EntryType.FILE
    return Entry(
        name=info.filename,
        type=kind,
        size=info.file_size,
        compressed=info.compress_size,
        encrypted=bool(info.flag_bits & 0x1),
        readable_method=info.compress_type in ZIP_METHODS,
    )


def _extract(source: _Readable, target: Path, cap: int, name: str, declared: int | None) -> int:
    """Copy ``source`` into a new file, stopping as soon as more than ``cap`` bytes come out."""
    try:
        return _write(_chunks(source), target, cap)
    except _Exceeded as exc:
        header = "" if declared is None else f"; its header declares {declared:,}"
        raise RejectFile(
            [
                error(
                    "member_too_large",
                    f"member {name!r} is refused: it produces more than {cap:,} bytes{header}; extraction stopped "
                    f"after {exc.written:,} bytes (a zip bomb, or a corrupt archive)",
                )
            ]
        ) from None


def _chunks(source: _Readable) -> Iterator[bytes]:
    while chunk := source.read(CHUNK):
        yield chunk


def _write(chunks: Iterator[bytes], target: Path, cap: int) -> int:
    written = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:  # reading errors propagate as they are: the archive is broken
            if written + len(chunk) > cap:
                raise _Exceeded(written)
            try:
                out.write(chunk)
            except OSError as exc:
                raise TransientError(f"cannot write while unpacking (disk full?): {exc.strerror}") from exc
            written += len(chunk)
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise TransientError(f"cannot write while unpacking (disk full?): {exc.strerror}") from exc
    return written


def claim_members(
    unpacked: Unpacked, archive_name: str, claimed_folder: Path, now: datetime, owner: str
) -> list[tuple[str, Path]]:
    """Rename the extracted members into the claimed folder as files of instance ``owner``, in listing order
    (their claimed times step by a microsecond, so their names sort in that order), and make the renames
    durable. Returns (delivered name, claimed path) per member."""
    claimed_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    for number, member in enumerate(unpacked.members):
        name = member_display_name(archive_name, member.name)
        target = claimed_folder / make_claimed_name(now + timedelta(microseconds=number), owner, name)
        os.rename(member.path, target)
        out.append((name, target))
    fsync_dir(claimed_folder)
    return out


def work_folder(data_dir: Path, run_id: int) -> Path:
    return data_dir / UNPACKING_FOLDER / str(run_id)


def clear_work_folders(data_dir: Path) -> None:
    """At start-up: partial extractions a crash left behind (derived copies; their archives are still
    claimed and are unpacked again)."""
    shutil.rmtree(data_dir / UNPACKING_FOLDER, ignore_errors=True)
