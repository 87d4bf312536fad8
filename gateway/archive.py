"""The archive: every processed file is kept; rejected ones beside a report an intermediary can act on.

Layout under ``archive/``::

    <CODE>/<YYYY>/<MM>/<DD>/<run>_<sha256>_<name>                 performed and held
    <CODE>/duplicate/<YYYY>/<MM>/<DD>/<run>_<sha256>_<name>       same content delivered again
    <CODE>/rejected/<YYYY>/<MM>/<DD>/<run>_<sha256>_<name>        rejected, with .errors.json and .errors.txt

Nothing in the pipeline ever deletes a file; only retention (gateway.retention) removes files past the period.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from gateway.errors import TransientError

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_NAME = 120


def safe_name(name: str) -> str:
    """A file name that is safe as one path component: no control characters or separators, bounded length."""
    cleaned = _UNSAFE.sub("_", name).strip() or "unnamed"
    if cleaned in (".", ".."):
        cleaned = "unnamed"
    if len(cleaned) > MAX_NAME:
        suffix = PurePosixPath(cleaned).suffix[:16]
        cleaned = cleaned[: MAX_NAME - len(suffix)] + suffix
    return cleaned


def archive_relpath(kind: str, code: str, day: datetime, run_id: int, sha256: str | None, name: str) -> str:
    """Where a processed file goes, relative to data_dir. ``kind``: archived | duplicate | rejected."""
    parts = ["archive", safe_name(code)]
    if kind != "archived":
        parts.append(kind)
    parts += [f"{day:%Y}", f"{day:%m}", f"{day:%d}", f"{run_id}_{sha256 or 'nohash'}_{safe_name(name)}"]
    return str(PurePosixPath(*parts))


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """SHA-256 and size of a stream, read in chunks; the stream is rewound afterwards."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_full_is_transient(what: str) -> Iterator[None]:
    """A full data folder (or quota) is a TransientError: the file stays where it is and is tried again."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL:
            raise TransientError(
                f"the data folder is full ({exc.strerror}) while {what}; the file stays claimed and is tried again "
                "when there is space"
            ) from exc
        raise


def move_into_archive(source: Path, data_dir: Path, relpath: str) -> Path:
    """Rename ``source`` to its archive place (same filesystem) and make the rename durable."""
    target = data_dir / relpath
    with disk_full_is_transient(f"archiving {relpath}"):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        fsync_dir(target.parent)
    return target


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_report(data_dir: Path, relpath: str, run: Mapping[str, Any]) -> None:
    """Beside a rejected file: ``NAME.errors.json`` (the run as JSON) and ``NAME.errors.txt`` (readable)."""
    target = data_dir / relpath
    with disk_full_is_transient(f"writing the report of {relpath}"):
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{target}.errors.json").write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", "utf-8")
        Path(f"{target}.errors.txt").write_text(render_report(run), "utf-8")


def render_report(run: Mapping[str, Any]) -> str:
    """The report an intermediary reads: what was delivered, what happened, and every problem by line."""
    lines = [
        f"File:           {run.get('file')}",
        f"Administration: {run.get('administration')}",
        f"SHA-256:        {run.get('sha256')}",
        f"Received:       {run.get('started_at')}",
        f"Outcome:        {run.get('status')}",
    ]
    if run.get("reason"):
        lines.append(f"Reason:         {run['reason']}")
    for title, key in (("Errors", "errors"), ("Warnings", "warnings")):
        problems = run.get(key) or []
        if not problems:
            continue
        lines += ["", f"{title} ({len(problems)}):"]
        for p in problems:
            where = "file" if p.get("row") is None else f"line {p['row']}"
            if p.get("column"):
                where += f", column {p['column']}"
            lines.append(f"  {where}: {p['message']} [{p['code']}]")
    return "\n".join(lines) + "\n"
