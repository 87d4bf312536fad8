"""The importing process's database work alone: stage rows recorded once, replayed through staging and reconcile.

    python benchmarks/replay_stage.py record open-items.csv first.batches
    python benchmarks/replay_stage.py record reimport.csv later.batches
    python benchmarks/replay_stage.py replay first.batches later.batches

``record`` parses a payt-csv file as the parse worker does (``StageRows`` batches, naive UTC timestamps as
for SQLite) and pickles the batches to a file. ``replay`` loads them all into memory first (so that parsing
and unpickling are not timed), then imports each recorded file into one fresh SQLite database, as the
pipeline does on SQLite: ``create_stage``, per batch ``stage_batch`` and the batch work (``gateway.batchwise``),
then ``finish_stage``, ``reconcile_staged`` and the commit. It prints the CPU seconds of each of the three
parts per file: a change to staging or reconcile can be judged on its own part, without the worker's share
of the machine. ``PYTHONPATH=<other checkout>`` replays another version's code on the same rows.
"""

from __future__ import annotations

import inspect
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.apply import RunContext, reconcile_staged
from gateway.batchwise import batchwise_work, stored
from gateway.config import IgnoreSettings, KindSettings
from gateway.ignore import IgnoreLists
from gateway.runs import start_run
from gateway.stage_rows import Batch, LocalRows, StagePolicy
from gateway.staging import Known, create_stage, discard_stage, finish_stage, one_version_per_debtor, stage_batch
from gateway.store import ensure_administration, make_engine, migrate, transaction
from parsers.payt_csv import CsvOptions, parse_payt_csv

try:
    from gateway.staging import proved
except ImportError:  # a checkout before this function (PYTHONPATH=<other checkout>)
    proved = None  # type: ignore[assignment]

ADMINISTRATION = "BENCH"
IGNORE = IgnoreLists.from_settings(IgnoreSettings())


def record(csv_file: Path, out_file: Path) -> int:
    policy = StagePolicy(KindSettings(), IGNORE, ZoneInfo("Europe/Amsterdam"))
    rows = 0
    with csv_file.open("rb") as source, out_file.open("wb") as out:
        snapshot = parse_payt_csv(source, CsvOptions(ADMINISTRATION))
        for batch in LocalRows(snapshot, policy, naive_utc=True).batches():
            pickle.dump(batch, out, pickle.HIGHEST_PROTOCOL)
            rows += len(batch[0])
    print(f"recorded {rows:,} rows of {csv_file.name} in {out_file}")
    return 0


def recorded(path: Path) -> Iterator[Batch]:
    with path.open("rb") as source:
        while True:
            try:
                yield pickle.load(source)  # our own recording
            except EOFError:
                return


def replay_one(engine: Any, batches: list[Batch], now: datetime) -> tuple[float, float, float, Any]:
    """One import of the recorded batches: CPU seconds per batch work, after the last row, commit; counts."""
    rows = sum(len(invoice_rows) for invoice_rows, _ in batches)
    with _import_transaction(engine) as conn:
        admin_id = ensure_administration(conn, ADMINISTRATION, "Benchmark", now)
        run_id = start_run(conn, administration_id=admin_id, source="file", trigger="benchmark", now=now)
        ctx = RunContext(admin_id, run_id, now, now.date())
        state = stored(conn, admin_id)
        work = batchwise_work(conn, ctx, state)
        create_stage(conn)
        started = time.process_time()
        for batch in batches:
            stage_batch(conn, batch)
            if work is not None:
                work.after_batch(conn)
        staged_at = time.process_time()
        known = _known(conn, work)
        staged = finish_stage(conn, set(), 0, known)
        applied = reconcile_staged(
            conn,
            ctx,
            rows=rows,
            explicit_empty=False,
            guards=None,
            ignore=IGNORE,
            state=state,
            staged=staged,
            batchwise=work,
        )
        reconciled_at = time.process_time()
        discard_stage(conn)
    committed_at = time.process_time()
    return staged_at - started, reconciled_at - staged_at, committed_at - reconciled_at, applied.counts


def _import_transaction(engine: Any) -> Any:
    """The pipeline's import transaction (``bulk``: on SQLite without foreign-key checks, so without statement
    journals); an older checkout's ``transaction`` has no such argument."""
    if "bulk" in inspect.signature(transaction).parameters:
        return transaction(engine, bulk=True)
    return transaction(engine)


def _known(conn: Any, work: Any) -> Known:
    """What the batch work proved, as ``stage_source`` asks it (``staging.proved``; older checkouts, which
    have no such function: what they could ask)."""
    if proved is not None:
        return proved(conn, work)
    if work is None:
        return Known(False, one_version_per_debtor(conn))
    try:
        unique = work.unique_numbers(conn)
    except TypeError:  # before 14b264e
        unique = work.unique_numbers()
    ask = getattr(work, "one_version_per_debtor", None)  # from this session's last change
    return Known(unique, ask(conn) if ask is not None else one_version_per_debtor(conn))


def replay(files: Sequence[Path], parent: Path | None) -> int:
    loaded = [list(recorded(path)) for path in files]
    folder = Path(tempfile.mkdtemp(prefix="payt-replay-", dir=parent))
    engine = make_engine(f"sqlite:///{folder / 'gateway.db'}")
    try:
        migrate(engine)
        day = datetime(2026, 11, 2, 12, tzinfo=UTC)
        for n, (path, batches) in enumerate(zip(files, loaded, strict=True)):
            per_batch, after, commit, counts = replay_one(engine, batches, day + timedelta(days=n))
            print(
                f"{path.name}: per batch {per_batch:.2f} s, after the last row {after:.2f} s, commit {commit:.2f} s "
                f"(CPU); created {counts.invoices_created:,}, updated {counts.invoices_updated:,}, "
                f"closed {counts.invoices_closed:,}"
            )
        return 0
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 3 and args[0] == "record":
        return record(Path(args[1]), Path(args[2]))
    if len(args) >= 2 and args[0] == "replay":
        return replay([Path(a) for a in args[1:]], None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
