"""The hostile input corpus through the running daemon: each file refused within bounded time and memory with a
report, and the daemon still running. Large cases are generated here, at test time.

Covered elsewhere and not repeated: XML (XXE, billion laughs, external DTD, XInclude, deep nesting, huge text
nodes) in tests/test_xml_hostile.py (parser, validate, ingest and the daemon); archive details (every bomb and
traversal variant, symlink members, encryption) in tests/test_unpack.py and tests/test_archive_ingest.py.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from tests.archive_files import HEADER, make_zip, open_items, zip_bomb
from tests.fleet import Drop, Instance, drop, query, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MiB = 1024**2
RSS_LIMIT_MB = 400  # the daemon's peak resident memory over the whole corpus (the largest file is 100 MB)
SECONDS_PER_FILE = 60


def write_big(path: Path, head: bytes, unit: bytes, count: int, tail: bytes = b"") -> None:
    with open(path, "wb") as out:
        out.write(head)
        block = unit * max(1, MiB // len(unit))
        for _ in range(count // (MiB // len(unit) or 1)):
            out.write(block)
        out.write(tail)


def corpus(folder: Path) -> dict[str, tuple[str, bytes | Path]]:
    """name -> (why it must be refused, content or a generated file)."""
    folder.mkdir(parents=True, exist_ok=True)
    line = folder / "one-line.csv"  # a 100 MB line: one field that never ends
    write_big(line, HEADER.encode(), b"x", 100 * MiB, b"\n")
    empty = folder / "empty-lines.csv"  # a header and 1,000,000 empty lines
    write_big(empty, HEADER.encode(), b"\n", 1_000_000)
    wide = ";".join(f"c{i}" for i in range(10_000)) + "\n" + ";".join("1" for _ in range(10_000)) + "\n"
    inner = gzip.compress(open_items("1"))
    long_member = "F" * 296 + ".csv"  # 300 characters: longer than a file name may be on disk (255 bytes)
    return {
        "one-line.csv": ("a 100 MB line", line),
        "empty-lines.csv": ("1,000,000 empty lines", empty),
        "nul.csv": ("NUL bytes", open_items("1")[:120] + b"\0\0\0" + open_items("2")[120:]),
        "latin.csv": ("invalid UTF-8 (and not Windows-1252 either)", open_items("1") + b"\x81\x8d\x8f\x90\x9d\n"),
        "utf16.csv": (
            "invalid UTF-16 (an unpaired surrogate)",
            b"\xff\xfe" + "a;b\n".encode("utf-16-le") + b"\x00\xd8",
        ),
        "wide.csv": ("10,000 columns", wide.encode()),
        "bomb.zip": ("a zip bomb (1,000:1)", zip_bomb(64 * MiB)),
        "traversal.zip": ("a zip with traversal names", make_zip([("../../etc/cron.d/x", b"x"), ("ok.csv", b"a")])),
        "truncated.csv.gz": ("a truncated gzip", inner[: len(inner) // 2]),
        "Factuur 1.pdf": ("a PDF that is not one", b"<html><body>502 Bad Gateway</body></html>"),
        "ctrl\x01\x1b[31m\tname\n.csv": ("control characters in the file name (and no CSV inside)", b"\x00\x01\x02"),
        "long.zip": ("a member name of 300 characters", make_zip([(long_member, b"\xff\xfe\x00")])),
    }


def peak_rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_every_hostile_file_is_refused_with_a_report_and_the_daemon_keeps_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    codes = ["EVIL", "GOOD"]
    config = write_config(tmp_path, data, f"sqlite:///{data / 'gateway.db'}", codes, settle=0.2)
    cases = corpus(tmp_path / "generated")
    gateway = Instance(config, "gateway").started()
    timings: dict[str, float] = {}
    try:
        # Open items first, so that the guards have something to protect (an empty snapshot is then held).
        drop(data, Drop("EVIL", "first.csv", open_items("1", "2", "3")))
        gateway.wait_for(lambda: [e for e in gateway.events("file_processed") if e["file"] == "first.csv"])
        for name, (_why, content) in cases.items():
            inbox = data / "inbox" / "EVIL"
            started = time.monotonic()
            if isinstance(content, Path):
                content.rename(inbox / name)  # the same filesystem: a rename into place
            else:
                drop(data, Drop("EVIL", name, content))
            gateway.wait_for(
                lambda n=name: [e for e in gateway.events("file_processed") if e["file"] == n], timeout=SECONDS_PER_FILE
            )
            timings[name] = time.monotonic() - started
        # After all of it, a good file still goes through.
        drop(data, Drop("GOOD", "good.csv", open_items("1", "2")))
        gateway.wait_for(lambda: [e for e in gateway.events("file_processed") if e["file"] == "good.csv"])
        peak = peak_rss_mb(gateway.proc.pid)
    finally:
        code = gateway.stop()
    assert code == 0
    url = f"sqlite:///{data / 'gateway.db'}"
    rows = query(url, "SELECT file_name, status, reason, archived_path FROM import_runs")
    runs = {name: (status, reason, archived) for name, status, reason, archived in rows}
    assert runs.pop("long.zip")[0] == "performed", "a long member name alone is no reason to refuse the archive"
    [member] = [n for n in runs if n.startswith("long.zip/")]
    assert len(member) == len("long.zip/") + 300
    cases["long.zip"] = cases.pop("long.zip")
    runs["long.zip"] = runs.pop(member)  # its member, named in full, is refused for its content
    refused = {name: runs[name] for name in cases}
    assert refused.pop("empty-lines.csv")[0] == "held", "an empty snapshot is held by the empty-file guard"
    not_refused = {n: r for n, r in refused.items() if r[0] != "rejected"}
    assert not_refused == {}, not_refused
    assert runs["good.csv"][0] == "performed"
    for name, (_status, _reason, archived) in refused.items():
        assert (data / f"{archived}.errors.txt").is_file(), f"{name!r} has a report beside it"
        assert (data / archived).is_file(), f"{name!r} is archived"
    assert peak < RSS_LIMIT_MB, f"peak resident memory {peak:.0f} MB"
    assert max(timings.values()) < SECONDS_PER_FILE
    print({"peak_rss_mb": round(peak), "seconds": {k: round(v, 2) for k, v in timings.items()}})
    print({n: r for n, r in refused.items()})
