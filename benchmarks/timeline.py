"""Where the cores go during an import: the CPU time of each process of ``ingest`` per half second.

    python benchmarks/timeline.py FILE [FILE ...] [--format auto] [--tmp-dir DIR]

Imports the files one after the other into one fresh data folder (SQLite; a later file is a re-import), each
as one ``python -m gateway --json ingest`` subprocess run in the data folder, as ``bench_ingest.py`` runs it.
While it runs, ``/proc`` is read every 50 ms for the ingest process and its descendants (the parse worker,
the payt-xml validator); the table gives each one's CPU seconds per 0.5 s, so an idle core shows up as a
column below 0.5 while the import is not done. Linux only. ``PAYT_BENCH_CODE`` times another checkout, as
in ``bench_ingest.py``. Generate files with ``generate_csv.py`` or ``generate_xml.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_ingest import child_environment, gateway_toml, ingest_command

TICKS = os.sysconf("SC_CLK_TCK")
BUCKET = 0.5  # seconds per row of the table
SAMPLE = 0.05  # seconds between two reads of /proc


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/PID/task/TID/children)."""
    found = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(descendants(int(child)))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User plus system time of a process so far, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_name(pid: int) -> str:
    """The module a python process runs (``gateway``, ``gateway.parse_worker``, ``parsers.payt_xml_worker``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return "?"
    return argv[2] if len(argv) > 2 and argv[1] == "-m" else Path(argv[0]).name


@dataclass
class Timeline:
    exit_code: int
    wall: float
    names: dict[int, str]  # pid -> module
    buckets: list[dict[int, float]]  # per BUCKET seconds: pid -> CPU seconds
    total: dict[int, float]  # pid -> CPU seconds in all


def run_timed(command: list[str], folder: Path) -> Timeline:
    """Run ``command`` in ``folder`` and sample the CPU of it and its descendants."""
    with (folder / "ingest.out").open("wb") as out, (folder / "ingest.err").open("wb") as err:
        child = subprocess.Popen(command, cwd=folder, env=child_environment(), stdout=out, stderr=err)
        start = bucket_start = time.monotonic()
        names: dict[int, str] = {}
        last: dict[int, float] = {}
        buckets: list[dict[int, float]] = []
        current: dict[int, float] = {}
        while child.poll() is None:
            for pid in descendants(child.pid):
                used = cpu_seconds(pid)
                if used is None:
                    continue
                names.setdefault(pid, process_name(pid))
                current[pid] = current.get(pid, 0.0) + used - last.get(pid, 0.0)
                last[pid] = used
            now = time.monotonic()
            if now - bucket_start >= BUCKET:
                buckets.append(current)
                current, bucket_start = {}, now
            time.sleep(SAMPLE)
        buckets.append(current)
        return Timeline(child.returncode, time.monotonic() - start, names, buckets, last)


def table(timeline: Timeline) -> str:
    pids = sorted(timeline.names)
    lines = ["     s " + " ".join(f"{timeline.names[p][-22:]:>22}" for p in pids)]
    for n, bucket in enumerate(timeline.buckets):
        lines.append(f"{n * BUCKET:6.1f} " + " ".join(f"{bucket.get(p, 0.0):22.2f}" for p in pids))
    lines.append(" total " + " ".join(f"{timeline.total.get(p, 0.0):22.2f}" for p in pids))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="files to import, in order")
    parser.add_argument("--format", default="auto", help="the administration's format (default auto)")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="parent of the data folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="payt-timeline-", dir=args.tmp_dir))
    try:
        toml = gateway_toml(f"sqlite:///{folder / 'gateway.db'}").replace('"payt-csv"', f'"{args.format}"')
        (folder / "gateway.toml").write_text(toml, encoding="utf-8")
        day = datetime(2026, 11, 2, 12, tzinfo=UTC)
        for n, path in enumerate(args.files):
            command = ingest_command(folder / "gateway.toml", path.resolve(), day + timedelta(days=n))
            timeline = run_timed(command, folder)
            cpu = sum(timeline.total.values())
            print(f"== {path.name}: {timeline.wall:.2f} s wall, exit {timeline.exit_code}, CPU {cpu:.2f} s")
            print(table(timeline), flush=True)
            if timeline.exit_code != 0:
                sys.stderr.write((folder / "ingest.err").read_text(errors="replace")[-4000:])
                return 1
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
