"""Time ``payt-gateway ingest`` of generated open-items files and measure its peak memory.

    python benchmarks/bench_ingest.py [--sizes 10000,100000,1000000] [--database-url URL] [--keep]

For each size: a fresh data folder (under the system temp folder) with its own gateway.toml and database,
a first import of a generated snapshot, then a re-import of the same snapshot with 1 % of the open
amounts lowered. Each import is one ``python -m gateway --json ingest`` subprocess, timed end to end
(start-up, parse, validate, reconcile, archive); its peak RSS comes from ``os.wait4``. Generating the
files is not timed. Results: a table on stdout and ``benchmarks/results/ingest-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from generate_csv import DEFAULT_AS_OF, Generated, generate

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
ADMINISTRATION = "BENCH"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
TARGET_SIZE = 1_000_000  # the targets are stated for 1M rows; smaller runs are dominated by start-up
TARGET_ROWS_PER_S = 100_000
TARGET_PEAK_RSS_MB = 400.0
UPDATED_TOLERANCE = 0.10  # invoices_updated of a re-import may differ this much from the changed rows


class BenchFailure(RuntimeError):
    """An ingest that did not do what the benchmark asked: the numbers would be meaningless."""


@dataclass
class Measurement:
    size: int
    phase: str  # first | reimport
    seconds: float
    rows_per_s: float
    peak_rss_kib: int
    generate_seconds: float
    file_bytes: int
    changed_rows: int
    run: dict[str, Any] = field(repr=False)
    targets_met: bool | None = None
    target_notes: list[str] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib * 1024 / 1e6


# -- configuration and database -----------------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML escapes)."""
    return json.dumps(value, ensure_ascii=False)


def gateway_toml(database_url: str) -> str:
    return "\n".join(
        (
            "[gateway]",
            'data_dir = "."',
            f"database_url = {toml_string(database_url)}",
            'timezone = "Europe/Amsterdam"',
            "",
            "[sftp]",
            "enabled = false",
            "",
            "[http]",
            "enabled = false",
            "",
            f"[administrations.{ADMINISTRATION}]",
            'name = "Benchmark"',
            'source = "file"',
            'format = "payt-csv"',
            'import_mode = "off"',
            'country = "NL"',
            'currency = "EUR"',
            "",
            f"[administrations.{ADMINISTRATION}.guards]",
            "max_close_ratio = 1.0",
            "",
        )
    )


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


@contextmanager
def postgres_schema(url: str, keep: bool) -> Iterator[str]:
    """A fresh schema on the given server; yields the URL that makes it the search path. Dropped after."""
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"kept PostgreSQL schema {schema}", file=sys.stderr)
        else:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def database_for_run(url: str | None, keep: bool) -> Iterator[str]:
    if url is None:
        yield "sqlite:///gateway.db"  # relative to data_dir
    elif is_postgres(url):
        with postgres_schema(url, keep) as scoped:
            yield scoped
    else:
        yield url


@contextmanager
def data_folder(size: int, parent: Path | None, keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"payt-bench-{size}-", dir=parent))
    try:
        yield folder
    except BaseException:
        keep = True  # a failed run is kept for inspection
        raise
    finally:
        if keep:
            print(f"kept data folder {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


# -- one ingest ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOutcome:
    seconds: float
    peak_rss_kib: int
    exit_code: int
    run: dict[str, Any]
    cpu_seconds: float = 0.0  # user + system, the process and the children it waited for


def ingest_command(config: Path, csv_file: Path, now: datetime) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config),
        "--now",
        now.isoformat(),
        "--json",
        "ingest",
        str(csv_file),
        "--administration",
        ADMINISTRATION,
    ]


def code_dir() -> Path:
    """The checkout whose gateway is timed: this one, or ``PAYT_BENCH_CODE`` (another worktree, e.g.
    ``git worktree add /tmp/old <commit>``), so that old and new code can be timed in the same hour."""
    other = os.environ.get("PAYT_BENCH_CODE")
    return Path(other).resolve() if other else REPO_DIR


def child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYT_GATEWAY_", "PAYT_BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(code_dir()), os.environ.get("PYTHONPATH"))))
    return env


def run_ingest(folder: Path, csv_file: Path, now: datetime) -> IngestOutcome:
    """One timed ``ingest`` subprocess; output goes to files (a pipe could fill up before wait4 returns)."""
    stdout_path = folder / f"{csv_file.stem}.stdout.json"
    stderr_path = folder / f"{csv_file.stem}.stderr.log"
    command = ingest_command(folder / "gateway.toml", csv_file, now)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=folder, env=child_environment(), stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    text = stdout_path.read_text(encoding="utf-8")
    try:
        run = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchFailure(
            f"ingest of {csv_file.name} exited {child.returncode} without a JSON document ({exc}).\n"
            f"command: {' '.join(command)}\nstdout:\n{tail(text)}\nstderr:\n{tail(read_text(stderr_path))}"
        ) from None
    return IngestOutcome(seconds, usage.ru_maxrss, child.returncode, run, usage.ru_utime + usage.ru_stime)


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def check_outcome(outcome: IngestOutcome, rows: int, expected_updates: int | None, stderr: str) -> None:
    """Fail loudly when the ingest did not perform the whole file (and, on re-import, the payments)."""
    run = outcome.run
    counts = run.get("counts") or {}
    problems = []
    if run.get("status") != "performed" or outcome.exit_code != 0:
        problems.append(f"status {run.get('status')!r} (exit {outcome.exit_code}), reason: {run.get('reason')!r}")
    if counts.get("rows") != rows:
        problems.append(f"counts.rows is {counts.get('rows')!r}, expected {rows}")
    if expected_updates is not None:
        updated = counts.get("invoices_updated", -1)
        if abs(updated - expected_updates) > max(1, UPDATED_TOLERANCE * expected_updates):
            problems.append(f"counts.invoices_updated is {updated}, expected about {expected_updates}")
    if problems:
        summary = {k: run.get(k) for k in ("run_id", "status", "reason", "counts")}
        first_errors = (run.get("errors") or [])[:5]
        raise BenchFailure(
            "; ".join(problems)
            + f"\nrun: {json.dumps(summary)}\nfirst errors: {json.dumps(first_errors, ensure_ascii=False)}"
            + f"\nstderr:\n{tail(stderr)}"
        )


# -- one size -----------------------------------------------------------------------------------------------


def judge(m: Measurement, first: Measurement | None) -> None:
    """Targets (stated for 1M rows on SQLite): ≥ 100k rows/s and ≤ 400 MB; a re-import at least as fast."""
    if m.size < TARGET_SIZE:
        return
    if m.rows_per_s < TARGET_ROWS_PER_S:
        m.target_notes.append(f"rows/s {m.rows_per_s:,.0f} < {TARGET_ROWS_PER_S:,}")
    if m.peak_rss_mb > TARGET_PEAK_RSS_MB:
        m.target_notes.append(f"peak RSS {m.peak_rss_mb:.0f} MB > {TARGET_PEAK_RSS_MB:.0f} MB")
    if first is not None and m.rows_per_s < first.rows_per_s:
        m.target_notes.append(f"slower than the first import ({first.rows_per_s:,.0f} rows/s)")
    m.targets_met = not m.target_notes


def measure_phase(
    folder: Path, size: int, phase: str, generated: Generated, now: datetime, expected_updates: int | None
) -> Measurement:
    print(f"  {phase}: ingest {size:,} rows …", file=sys.stderr, flush=True)
    outcome = run_ingest(folder, generated.path, now)
    stderr = read_text(folder / f"{generated.path.stem}.stderr.log")
    check_outcome(outcome, size, expected_updates, stderr)
    return Measurement(
        size=size,
        phase=phase,
        seconds=outcome.seconds,
        rows_per_s=size / outcome.seconds,
        peak_rss_kib=outcome.peak_rss_kib,
        generate_seconds=generated.seconds,
        file_bytes=generated.size_bytes,
        changed_rows=generated.changed,
        run=outcome.run,
    )


def settle_writes() -> None:
    """Write the generated files to disk before an import is timed. Otherwise the kernel writes them back
    (~570 MB for 1M rows, 30 s after they were written: ``vm.dirty_expire_centisecs``) while the first import
    runs, and the timed import shares the machine with the untimed generator's output."""
    os.sync()


def bench_size(size: int, args: argparse.Namespace) -> list[Measurement]:
    with data_folder(size, args.tmp_dir, args.keep) as folder, database_for_run(args.database_url, args.keep) as url:
        (folder / "gateway.toml").write_text(gateway_toml(url), encoding="utf-8")
        source = folder / "source"
        source.mkdir()
        print(f"size {size:,}: generating in {folder}", file=sys.stderr, flush=True)
        first_file = generate(source / f"open-items-{size}.csv", size, args.seed)
        second_file = generate(
            source / f"open-items-{size}-paid.csv",
            size,
            args.seed + 1,
            change_open_pct=args.change_open_pct,
            from_seed=args.seed,
        )
        settle_writes()
        day = datetime.combine(DEFAULT_AS_OF, datetime.min.time(), UTC) + timedelta(days=1, hours=1)
        first = measure_phase(folder, size, "first", first_file, day, None)
        judge(first, None)
        again = measure_phase(folder, size, "reimport", second_file, day + timedelta(days=1), second_file.changed)
        judge(again, first)
        return [first, again]


# -- report -------------------------------------------------------------------------------------------------


def table(results: Sequence[Measurement]) -> str:
    lines = [
        f"{'rows':>10}  {'phase':<8}  {'seconds':>8}  {'rows/s':>9}  {'peak RSS MB':>11}  {'updated':>8}  targets",
    ]
    for m in results:
        verdict = "-" if m.targets_met is None else "met" if m.targets_met else "MISSED: " + "; ".join(m.target_notes)
        updated = (m.run.get("counts") or {}).get("invoices_updated", "")
        lines.append(
            f"{m.size:>10,}  {m.phase:<8}  {m.seconds:>8.2f}  {m.rows_per_s:>9,.0f}  {m.peak_rss_mb:>11.1f}  "
            f"{updated:>8}  {verdict}"
        )
    return "\n".join(lines)


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code_dir(), capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def masked(url: str | None) -> str:
    if url is None:
        return "sqlite (in the data folder)"
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def write_results(results: Sequence[Measurement], args: argparse.Namespace, started: datetime) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started_at": started.isoformat(),
        "git_commit": git_commit(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "database": masked(args.database_url),
        "seed": args.seed,
        "change_open_pct": args.change_open_pct,
        "targets": {
            "size": TARGET_SIZE,
            "rows_per_s": TARGET_ROWS_PER_S,
            "peak_rss_mb": TARGET_PEAK_RSS_MB,
            "reimport": "at least as fast as the first import",
        },
        "results": [{**asdict(m), "peak_rss_mb": round(m.peak_rss_mb, 1), "run": summary(m.run)} for m in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "status", "started_at", "finished_at", "counts", "reason", "archived_path")
    return {k: run.get(k) for k in keys}


# -- command line -------------------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of row counts: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=list(DEFAULT_SIZES), help="comma-separated row counts")
    parser.add_argument(
        "--database-url",
        default=None,
        help="default: SQLite in the data folder; a postgresql+psycopg:// URL gets a fresh schema",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folders (and PostgreSQL schemas)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated snapshot (default 1)")
    parser.add_argument("--change-open-pct", type=float, default=1.0, help="%% of open amounts lowered on re-import")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="parent of the data folders (default: system temp)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a 1M-row target is missed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    results: list[Measurement] = []
    try:
        for size in args.sizes:
            results.extend(bench_size(size, args))
    except BenchFailure as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if results:
            print(table(results))
            print(f"results: {write_results(results, args, started)}")
    missed = any(m.targets_met is False for m in results)
    return 3 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
