"""Time payt-xml end to end (validate and ingest) and compare the XSD validators.

    python benchmarks/bench_xml.py [--sizes 100000,1000000] [--database-url URL] [--keep]

For each size: a seeded payt-xml file (``generate_xml.py``, the same open items as ``generate_csv.py``), then
1. ``python -m gateway --json ingest`` into a fresh data folder (format "auto"), timed end to end, with its
   CPU time and peak RSS from ``os.wait4`` (user + system and the maximum, over the ingest process and the
   worker process that validates and reads the file), and each process's own peak (``VmHWM``) and CPU
   time, sampled every 0.1 s from ``/proc``: the sum of the peaks, and the worker's share of the CPU;
2. the streaming lxml schema pass alone (``parsers.payt_xml_schema.first_pass``) in a fresh process, and
   the validator process's C check (``parsers.schema_stream.clean``: libxml2 without a tree) likewise;
3. xmlschema's own validation of the same file (``XMLSchema.is_valid`` on a lazy ``XMLResource``: a
   non-lazy one refuses documents of more than 1M elements, about 85k invoices) when the file has at most
   ``--xmlschema-max`` invoices (default 100,000), else of a generated sample of that many invoices; the
   ratio (lxml's streaming validation / xmlschema's) is per invoice.
Results: a table on stdout and ``benchmarks/results/xml-<timestamp>.json`` (git-ignored), with the load
average before and after each ingest: on a shared machine the times say little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench_ingest import (
    RESULTS_DIR,
    child_environment,
    data_folder,
    database_for_run,
    gateway_toml,
    git_commit,
    masked,
    run_ingest,
    settle_writes,
    sizes,
)
from generate_csv import DEFAULT_AS_OF
from generate_xml import generate

TARGET_SIZE = 1_000_000
TARGET_INVOICES_PER_S = 50_000
TARGET_PEAK_RSS_MB = 200.0
FIRST_PASS = (
    "import sys, time\n"
    "from parsers.payt_xml_schema import first_pass\n"
    "t = time.perf_counter()\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    ok = first_pass(f).valid\n"
    "print(ok, time.perf_counter() - t)\n"
)
C_PASS = (
    "import os, sys, time\n"
    "from parsers import schema_stream\n"
    "from parsers.payt_xml_schema import stream_xsd\n"
    "xsd = stream_xsd()[0]\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "t = time.perf_counter()\n"
    "ok = schema_stream.clean(fd, 0, xsd)\n"
    "print(ok, time.perf_counter() - t)\n"
)
XMLSCHEMA = (
    "import sys, time\n"
    "import xmlschema\n"
    "schema = xmlschema.XMLSchema(sys.argv[2])\n"
    "t = time.perf_counter()\n"
    "ok = schema.is_valid(xmlschema.XMLResource(sys.argv[1], lazy=True))\n"
    "print(ok, time.perf_counter() - t)\n"
)


@dataclass
class Result:
    size: int
    file_mb: float
    ingest_seconds: float
    invoices_per_s: float
    cpu_seconds: float  # user + system of the ingest and its worker
    peak_rss_mb: float  # the largest process (wait4)
    peak_rss_sum_mb: float  # the sum of each process's own peak (sampled)
    processes: dict[str, tuple[float, float]]  # role -> (own peak RSS MB, CPU seconds), sampled
    load_before: float
    load_after: float
    status: str
    lxml_seconds: float
    lxml_invoices_per_s: float
    lxml_peak_rss_mb: float
    c_seconds: float  # the validator process's check, parsers.schema_stream (libxml2 in C, no tree)
    c_invoices_per_s: float
    c_peak_rss_mb: float
    xmlschema_invoices: int
    xmlschema_seconds: float
    xmlschema_invoices_per_s: float
    ratio: float  # lxml streaming validation speed / xmlschema's, per invoice


def timed_script(script: str, *args: str) -> tuple[bool, float, float]:
    """Run a Python snippet that prints "<valid> <seconds>"; (valid, seconds, peak RSS MB)."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, env=child_environment(), text=True
    )
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{args}: exit {child.returncode}")
    valid, seconds = out.split()
    return valid == "True", float(seconds), usage.ru_maxrss * 1024 / 1e6


class PeakSampler:
    """Each descendant process's own peak RSS (``VmHWM`` from ``/proc``), sampled until ``stop()``: a
    process's value is its peak up to the last sample before it exited."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (command, VmHWM KiB)
        self.cpu: dict[int, float] = {}  # pid -> user + system seconds at the last sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in descendants(os.getpid()):
                fields = read_proc(pid, "stat").rsplit(")", 1)[-1].split()
                if len(fields) > 12:
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                status = read_proc(pid, "status")
                command = read_proc(pid, "cmdline").replace("\0", " ").strip()
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        if kib >= self.peaks.get(pid, ("", 0))[1]:
                            self.peaks[pid] = (command, kib)

    def by_role(self) -> dict[str, tuple[float, float]]:
        """(peak MB, CPU seconds) per process: "ingest", "worker" (the parse worker, ``gateway.parse_worker``),
        "validator" (the payt-xml schema pass, ``parsers.payt_xml_worker``), others by pid."""
        roles = {"payt_xml_worker": "validator", "gateway.parse_worker": "worker", " ingest ": "ingest"}
        found: dict[str, tuple[float, float]] = {}
        for pid, (command, kib) in self.peaks.items():
            role = next((r for part, r in roles.items() if part in command), str(pid))
            found[role] = (kib * 1024 / 1e6, self.cpu.get(pid, 0.0))
        return found


def read_proc(pid: int, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_proc(int(entry), "stat")
            if stat:
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def bench(size: int, args: argparse.Namespace) -> Result:
    xsd = str(Path(__file__).resolve().parent.parent / "schemas" / "payt-xml-1.xsd")
    with data_folder(size, args.tmp_dir, args.keep) as folder, database_for_run(args.database_url, args.keep) as url:
        (folder / "gateway.toml").write_text(gateway_toml(url).replace('"payt-csv"', '"auto"'), "utf-8")
        xml_file = folder / f"open-items-{size}.xml"
        generated = generate(xml_file, size, args.seed)
        settle_writes()
        load_before = os.getloadavg()[0]
        with PeakSampler() as sampler:
            outcome = run_ingest(folder, xml_file, datetime.combine(DEFAULT_AS_OF, datetime.min.time(), UTC))
        load_after = os.getloadavg()[0]
        peaks = sampler.by_role()
        status = outcome.run.get("status", f"exit {outcome.exit_code}")
        if status != "performed" or outcome.run.get("counts", {}).get("rows") != size:
            raise RuntimeError(f"ingest of {size}: {status}: {outcome.run.get('reason')}")
        valid, lxml_seconds, lxml_rss = timed_script(FIRST_PASS, str(xml_file))
        assert valid, "the generated file is valid"
        clean, c_seconds, c_rss = timed_script(C_PASS, str(xml_file))
        assert clean, "the C check agrees that the file is valid"
        sample, sample_size = xml_file, size
        if size > args.xmlschema_max:
            sample, sample_size = folder / "sample.xml", args.xmlschema_max
            generate(sample, sample_size, args.seed)
        ok, xs_seconds, _ = timed_script(XMLSCHEMA, str(sample), xsd)
        assert ok, "xmlschema agrees that the file is valid"
        lxml_rate, xs_rate = size / lxml_seconds, sample_size / xs_seconds
        return Result(
            size,
            generated.size_bytes / 1e6,
            outcome.seconds,
            size / outcome.seconds,
            outcome.cpu_seconds,
            outcome.peak_rss_kib * 1024 / 1e6,
            sum(mb for mb, _ in peaks.values()),
            peaks,
            load_before,
            load_after,
            status,
            lxml_seconds,
            lxml_rate,
            lxml_rss,
            c_seconds,
            size / c_seconds,
            c_rss,
            sample_size,
            xs_seconds,
            xs_rate,
            lxml_rate / xs_rate,
        )


def verdict(r: Result) -> str:
    """Each target on its own. Memory is judged on the sum of the processes' own peaks (the stricter reading:
    the largest process alone is what ``wait4`` reports)."""
    rate = r.invoices_per_s >= TARGET_INVOICES_PER_S
    memory = r.peak_rss_sum_mb <= TARGET_PEAK_RSS_MB
    return (
        f"rate {'met' if rate else 'MISSED'} (>= {TARGET_INVOICES_PER_S:,}/s), "
        f"memory {'met' if memory else 'MISSED'} (sum <= {TARGET_PEAK_RSS_MB:.0f} MB)"
    )


def table(results: list[Result]) -> str:
    lines = [
        f"{'invoices':>10} {'MB':>6} {'ingest s':>9} {'inv/s':>8} {'CPU s (worker, validator)':>25} {'load':>9} "
        f"{'RSS MB':>7} {'sum':>5}  "
        f"{'lxml XSD inv/s':>14} {'RSS MB':>7}  {'C XSD inv/s':>11} {'RSS MB':>7}  {'xmlschema inv/s':>15} "
        f"{'ratio':>6}  targets"
    ]
    for r in results:
        targets = verdict(r) if r.size == TARGET_SIZE else "-"
        lines.append(
            f"{r.size:>10,} {r.file_mb:>6.0f} {r.ingest_seconds:>9.1f} {r.invoices_per_s:>8,.0f} "
            f"{r.cpu_seconds:>10.1f} ({r.processes.get('worker', (0.0, 0.0))[1]:>5.1f}, "
            f"{r.processes.get('validator', (0.0, 0.0))[1]:>5.1f}) "
            f"{r.load_before:>4.1f}-{r.load_after:<4.1f} {r.peak_rss_mb:>7.0f} "
            f"{r.peak_rss_sum_mb:>5.0f}  "
            f"{r.lxml_invoices_per_s:>14,.0f} {r.lxml_peak_rss_mb:>7.0f}  {r.c_invoices_per_s:>11,.0f} "
            f"{r.c_peak_rss_mb:>7.0f}  {r.xmlschema_invoices_per_s:>15,.0f} "
            f"{r.ratio:>5.0f}x  {targets}"
        )
    return "\n".join(lines)


def positive(text: str) -> int:
    """A count of invoices of at least 1 (xmlschema is timed on a sample of that many)."""
    value = sizes(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"one count, not {text!r}")
    return value[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the data folder")
    parser.add_argument(
        "--xmlschema-max", type=positive, default=100_000, help="largest file given to xmlschema (at least 1)"
    )
    parser.add_argument("--tmp-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    results = []
    for size in args.sizes:
        began = time.perf_counter()
        results.append(bench(size, args))
        print(f"{size:,} invoices done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    print(table(results))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"xml-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(),
                "commit": git_commit(),
                "database_url": masked(args.database_url),
                "cpus": os.cpu_count(),
                "results": [asdict(r) for r in results],
            },
            indent=2,
        ),
        "utf-8",
    )
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
