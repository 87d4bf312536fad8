"""Reconcile work done on each staged batch (``gateway.batchwise``, SQLite): the first import into an empty
administration, and finding the changed invoices of a later one. The result must be exactly the staged
path's, whatever the batches cut."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.apply import RunContext, import_rows
from gateway.batchwise import Changes, FirstImport, batchwise_work, stored
from gateway.config import IgnoreSettings, KindSettings
from gateway.ignore import IgnoreLists
from gateway.records import DEBTOR_DATA_FIELDS, Entry, Snapshot
from gateway.runs import start_run
from gateway.stage_rows import LocalRows
from gateway.staging import Known, Staged, StagePolicy, create_stage, stage_matched, stage_source
from gateway.store import ensure_administration, make_engine, migrate, transaction
from gateway.tables import debtors, invoices, payments
from tests.test_reconcile_db import ZONE, apply_snapshot, debtor, entry, invoice

KINDS = KindSettings(zero_amount="skip", prepaid="import_no_send", credit_note="import_and_send")
IGNORE = IgnoreSettings(invoices=("TMP*",), debtors=("D9",))


def tricky_snapshot() -> list[Entry]:
    """Every file-wide rule of staging at once, spread over batches however they are cut."""
    return [
        entry(2, invoice("A1", "D1", "10.00", "10.00"), debtor("D1", city="Utrecht", email="a@d1.nl")),
        entry(3, invoice("DUP", "D2", "20.00", "20.00"), debtor("D2")),  # a duplicate of line 9
        entry(4, invoice("A2", "D1", "11.00", "0.00"), debtor("D1", city="Utrecht", email="a@d1.nl")),  # prepaid
        entry(5, invoice("TWICE", "D3", "5.00", "5.00"), debtor("D3")),
        entry(6, invoice("TWICE", "D3", "5.00", "4.00"), debtor("D3")),  # a duplicate in the same batch
        entry(7, invoice("Z1", "D1", "0.00", "0.00"), debtor("D1", city="Zeist")),  # skipped kind, new data
        entry(8, invoice("CR1", "D4", "-7.50", "-7.50"), debtor("D4")),
        entry(9, invoice("DUP", "D2", "20.00", "15.00"), debtor("D2")),
        entry(10, invoice("TMP-1", "D5", "3.00", "3.00"), debtor("D5")),  # ignored: D5 has no other row
        entry(11, invoice("K1", "D9", "3.00", "3.00"), debtor("D9")),  # ignored debtor
        entry(12, invoice("ERR", "D6", "9.00", "9.00"), debtor("D6")),  # its number has an error row too
        entry(13, invoice("A3", "D1", "12.00", "12.00"), debtor("D1", city="Amersfoort")),  # email left out
        entry(14, invoice("B1", "D7", "8.00", "8.00"), debtor("D7")),  # D7 is a blocked debtor
    ]


def database_state(engine: Engine) -> dict[str, Any]:
    """Every stored debtor and invoice by its natural key (not by id: the paths may use other ids)."""
    d, i = debtors, invoices
    with engine.connect() as conn:
        debtor_rows = conn.execute(sa.select(d.c.code, *(d.c[f] for f in DEBTOR_DATA_FIELDS), d.c.created_run_id))
        invoice_columns = [c for c in i.columns if c.name not in ("id", "debtor_id")]
        invoice_rows = conn.execute(sa.select(*invoice_columns, d.c.code).join(d, d.c.id == i.c.debtor_id))
        return {
            "debtors": {r[0]: tuple(r[1:]) for r in debtor_rows},
            "invoices": {r.number: tuple(r) for r in invoice_rows},
            "payments": conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one(),
        }


def imported(tmp_path: Path, name: str, snapshots: list[list[Entry]], now: datetime, **options: Any) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / name}.db")
    migrate(engine)
    try:
        outcomes = [
            apply_snapshot(
                engine,
                rows,
                now + timedelta(hours=n),
                kinds=KINDS,
                ignore=IGNORE,
                blocked_invoices=("ERR",),
                blocked_debtors=("D7",),
                error_rows=1,
                **options,
            )
            for n, rows in enumerate(snapshots)
        ]
        return database_state(engine), [(o.applied.counts, o.applied.held, o.problems) for o in outcomes]
    finally:
        engine.dispose()


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 10_000])
def test_batchwise_first_import_equals_the_staged_path(tmp_path: Path, fixed_now: datetime, chunk: int) -> None:
    snapshots = [tricky_snapshot()]
    staged = imported(tmp_path, "staged", snapshots, fixed_now, batchwise=False, chunk=chunk)
    batchwise = imported(tmp_path, "batchwise", snapshots, fixed_now, batchwise=True, chunk=chunk)
    assert batchwise == staged
    state, ((counts, held, problems),) = batchwise
    # The outcome itself, so that both paths cannot agree on a wrong result.
    assert held is None
    assert set(state["invoices"]) == {"A1", "A2", "CR1", "A3", "B1"}
    assert counts.invoices_created == 5 and counts.debtors_created == 6  # D1-D4, D6, D7 (not ignored D5, D9)
    assert state["debtors"]["D1"][DEBTOR_DATA_FIELDS.index("city")] == "Amersfoort", "the last row wins"
    assert state["debtors"]["D1"][DEBTOR_DATA_FIELDS.index("email")] is None, "as delivered on the last row"
    assert state["invoices"]["A2"][list(invoices.c.keys()).index("status") - 2] == "paid"
    assert sorted((p.row, p.code) for p in problems if p.code == "duplicate_invoice_number") == [
        (3, "duplicate_invoice_number"),
        (5, "duplicate_invoice_number"),
        (6, "duplicate_invoice_number"),
        (9, "duplicate_invoice_number"),
    ]


def tricky_reimport() -> list[Entry]:
    """A later snapshot of ``tricky_snapshot``: changes of every kind, and the file-wide rules again."""
    return [
        entry(2, invoice("A1", "D1", "10.00", "4.00", description="paid in part"), debtor("D1", city="Baarn")),
        entry(3, invoice("DUP", "D2", "20.00", "20.00"), debtor("D2")),  # no longer a duplicate: created now
        entry(4, invoice("CR1", "D4", "-7.50", "-7.50"), debtor("D4")),  # unchanged
        entry(5, invoice("A3", "D1", "12.00", "12.00", due=date(2026, 4, 30)), debtor("D1")),  # frozen change
        entry(6, invoice("A2", "D1", "11.00", "11.00"), debtor("D1")),  # reopened
        entry(7, invoice("B1", "D7", "8.00", "2.00"), debtor("D7")),  # D7 is blocked, not its invoice
        entry(8, invoice("N1", "D8", "6.00", "6.00"), debtor("D8")),
        entry(9, invoice("A1", "D1", "10.00", "3.00"), debtor("D1")),  # A1 twice: neither copy applies
        entry(10, invoice("ERR", "D6", "9.00", "1.00"), debtor("D6")),  # blocked by its error row
    ]


@pytest.mark.parametrize("chunk", [1, 2, 4, 10_000])
def test_a_later_import_equals_the_staged_path(tmp_path: Path, fixed_now: datetime, chunk: int) -> None:
    snapshots = [tricky_snapshot(), tricky_reimport()]
    staged = imported(tmp_path, "staged", snapshots, fixed_now, batchwise=False, chunk=chunk)
    batchwise = imported(tmp_path, "batchwise", snapshots, fixed_now, batchwise=True, chunk=chunk)
    assert batchwise == staged
    state, outcomes = batchwise
    counts, held, problems = outcomes[1]
    assert held is None
    assert (counts.invoices_created, counts.invoices_updated, counts.invoices_closed) == (2, 2, 0)
    status = list(invoices.c.keys()).index("status") - 2
    assert {n: row[status] for n, row in state["invoices"].items()} == {
        "A1": "open",  # not updated: delivered twice
        "A2": "open",
        "A3": "open",
        "B1": "open",
        "CR1": "open",
        "DUP": "open",
        "N1": "open",
    }
    assert [p.row for p in problems if p.code == "frozen_field_changed"] == [5]
    assert state["payments"] == 2  # A2 reopened (a negative payment of 11.00) and B1 paid 6.00


def test_the_batchwise_work_fits_what_is_stored(engine: Engine, fixed_now: datetime) -> None:
    def work() -> object:
        with transaction(engine) as conn:
            admin_id = ensure_administration(conn, "ACME", "Acme B.V.", fixed_now)
            run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=fixed_now)
            ctx = RunContext(admin_id, run_id, fixed_now, fixed_now.date())
            return batchwise_work(conn, ctx, stored(conn, admin_id))

    sqlite = engine.dialect.name == "sqlite"
    assert isinstance(work(), FirstImport) if sqlite else work() is None
    apply_snapshot(engine, [entry(2, invoice("A1", "D1", "10.00", "10.00"))], fixed_now)
    assert isinstance(work(), Changes) if sqlite else work() is None


@pytest.mark.parametrize("chunk", [1, 3, 10_000])
def test_a_held_later_import_writes_nothing_on_either_path(tmp_path: Path, fixed_now: datetime, chunk: int) -> None:
    first = [entry(n, invoice(f"H{n}", f"D{n % 4}", "10.00", "10.00")) for n in range(2, 202)]
    mostly_gone = [
        entry(2, invoice("H2", "D2", "10.00", "5.00")),
        entry(3, invoice("NEW1", "D99", "10.00", "10.00"), debtor("D99")),
        entry(4, invoice("NEW2", "D2", "10.00", "10.00")),
    ]
    snapshots = [first, mostly_gone]
    staged = imported(tmp_path, "staged", snapshots, fixed_now, batchwise=False, chunk=chunk)
    batchwise = imported(tmp_path, "batchwise", snapshots, fixed_now, batchwise=True, chunk=chunk)
    assert batchwise == staged
    state, outcomes = batchwise
    assert outcomes[1][1] is not None and "drop guard" in outcomes[1][1]
    assert len(state["invoices"]) == 200 and "D99" not in state["debtors"], "a held run writes nothing"
    assert state["payments"] == 0


def clean_snapshot() -> list[Entry]:
    """A first import with nothing for the file-wide rules to find: each debtor's rows together (one Debtor
    per run of rows, as the parsers give), every number once. ERR and D7 are blocked by rows with errors."""
    d1, d2, d7 = debtor("D1", city="Zeist"), debtor("D2"), debtor("D7")
    return [
        entry(2, invoice("C1", "D1", "10.00", "10.00"), d1),
        entry(3, invoice("C2", "D1", "11.00", "0.00"), d1),
        entry(4, invoice("ERR", "D1", "12.00", "12.00"), d1),
        entry(5, invoice("C3", "D2", "13.00", "13.00"), d2),
        entry(6, invoice("Z1", "D2", "0.00", "0.00"), d2),  # a skipped kind: not staged
        entry(7, invoice("C4", "D7", "14.00", "14.00"), d7),
    ]


def proved(tmp_path: Path, now: datetime, rows: list[Entry], chunk: int) -> Known:
    """What a first import's batch work and its rows prove about the stage of ``rows`` (a new database)."""
    engine = make_engine(f"sqlite:///{tmp_path / f'proof{len(list(tmp_path.iterdir()))}'}.db")
    migrate(engine)
    try:
        with transaction(engine) as conn:
            admin_id = ensure_administration(conn, "ACME", "Acme B.V.", now)
            run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=now)
            work = batchwise_work(conn, RunContext(admin_id, run_id, now, now.date()), "empty")
            assert isinstance(work, FirstImport)
            policy = StagePolicy(KINDS, IgnoreLists.from_settings(IGNORE), ZONE)
            return stage_source(conn, LocalRows(Snapshot("ACME", entries=iter(rows)), policy, True, chunk), work).known
    finally:
        engine.dispose()


@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_a_clean_first_import_proves_its_stage_clean(tmp_path: Path, fixed_now: datetime, chunk: int) -> None:
    again = [*clean_snapshot(), entry(8, invoice("C5", "D1", "1.00", "1.00"), debtor("D1", city="Zeist"))]
    changed = [*clean_snapshot(), entry(8, invoice("C5", "D7", "1.00", "1.00"), debtor("D7", city="Baarn"))]
    clean = clean_snapshot()
    duplicate = [*clean, entry(8, invoice("C1", "D7", "1.00", "1.00"), clean[-1].debtor)]  # D7's second row
    assert proved(tmp_path, fixed_now, clean_snapshot(), chunk) == Known(True, True)
    assert proved(tmp_path, fixed_now, again, chunk) == Known(True, False), "D1 has two versions (the same data)"
    assert proved(tmp_path, fixed_now, changed, chunk) == Known(True, False)
    assert proved(tmp_path, fixed_now, duplicate, chunk) == Known(False, True)
    assert proved(tmp_path, fixed_now, tricky_snapshot(), chunk) == Known(False, False)


@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_a_first_import_that_skips_the_checks_equals_the_staged_path(
    tmp_path: Path, fixed_now: datetime, chunk: int
) -> None:
    snapshots = [clean_snapshot()]
    staged = imported(tmp_path, "staged", snapshots, fixed_now, batchwise=False, chunk=chunk)
    batchwise = imported(tmp_path, "batchwise", snapshots, fixed_now, batchwise=True, chunk=chunk)
    assert batchwise == staged
    state, ((counts, held, problems),) = batchwise
    assert held is None and problems == []
    assert set(state["invoices"]) == {"C1", "C2", "C3", "C4"}, "ERR blocked, Z1 skipped"
    assert (counts.invoices_created, counts.debtors_created) == (4, 3)
    assert state["debtors"]["D1"][DEBTOR_DATA_FIELDS.index("city")] == "Zeist"


def in_runs(rows: list[Entry]) -> list[Entry]:
    """``rows`` with one Debtor object per run of a debtor's rows, as the parsers give: one version each."""
    shared: list[Entry] = []
    for e in rows:
        same = shared and shared[-1].debtor == e.debtor
        shared.append(replace(e, debtor=shared[-1].debtor) if same else e)
    return shared


def reimport_in_runs() -> list[Entry]:
    return [
        entry(2, invoice("C1", "D1", "10.00", "5.00"), debtor("D1", city="Baarn", email="new@d1.nl")),
        entry(3, invoice("C2", "D1", "11.00", "11.00"), debtor("D1", city="Baarn", email="new@d1.nl")),
        entry(4, invoice("N1", "D8", "6.00", "6.00"), debtor("D8")),
        entry(5, invoice("C4", "D7", "14.00", "3.00"), debtor("D7", city="Baarn")),  # D7 is blocked: kept
    ]


@pytest.mark.parametrize("batchwise", [True, False])
def test_debtors_from_their_only_versions_equal_debtors_from_the_last_versions(
    tmp_path: Path, fixed_now: datetime, batchwise: bool
) -> None:
    """The same snapshots with one Debtor object per row (a version per row: the last one is chosen) and
    with one per run of rows (one version per debtor: read as it is) store the same."""
    plain = [clean_snapshot(), reimport_in_runs()]
    assert plain[1][0].debtor is not plain[1][1].debtor and plain[1][0].debtor == plain[1][1].debtor
    runs = [in_runs(rows) for rows in plain]
    several = imported(tmp_path, "several", plain, fixed_now, batchwise=batchwise, chunk=2)
    one = imported(tmp_path, "one", runs, fixed_now, batchwise=batchwise, chunk=2)
    assert one == several
    state, outcomes = one
    city = DEBTOR_DATA_FIELDS.index("city")
    assert {code: data[city] for code, data in state["debtors"].items()} == {
        "D1": "Baarn",
        "D2": "Utrecht",
        "D7": "Utrecht",  # blocked: not updated
        "D8": "Utrecht",
    }
    assert state["debtors"]["D1"][DEBTOR_DATA_FIELDS.index("email")] == "new@d1.nl"
    assert (outcomes[1][0].debtors_created, outcomes[1][0].debtors_updated) == (1, 1)


def stored_abc() -> list[Entry]:
    return [entry(n, invoice(number, "D1", "10.00", "10.00")) for n, number in enumerate(("A", "B", "C"), 2)]


REIMPORTS = {
    "all delivered": (["A", "B", "C"], set()),
    "B missing": (["A", "C"], {"B"}),
    # As many rows as open invoices, but A twice: B is still missing (a count of rows alone would miss it).
    "A twice, B missing": (["A", "A", "C"], {"B"}),
    "a new one, B missing": (["A", "C", "N"], {"B"}),
    "all delivered, a new one twice": (["A", "B", "C", "N", "N"], set()),
}


@pytest.mark.parametrize("case", REIMPORTS)
@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_a_later_import_closes_what_is_missing_on_either_path(
    tmp_path: Path, fixed_now: datetime, chunk: int, case: str
) -> None:
    numbers, closed = REIMPORTS[case]
    later = [entry(n, invoice(number, "D1", "10.00", "10.00")) for n, number in enumerate(numbers, 2)]
    snapshots = [stored_abc(), later]
    options = {"guards": None, "chunk": chunk}
    staged = imported(tmp_path, "staged", snapshots, fixed_now, batchwise=False, **options)
    batchwise = imported(tmp_path, "batchwise", snapshots, fixed_now, batchwise=True, **options)
    assert batchwise == staged
    state, outcomes = batchwise
    status = list(invoices.c.keys()).index("status") - 2
    assert {n for n, row in state["invoices"].items() if row[status] == "paid"} == closed
    assert outcomes[1][0].invoices_closed == len(closed)


@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_a_later_import_proves_its_numbers_unique_and_nothing_missing_only_when_it_is_so(
    tmp_path: Path, fixed_now: datetime, chunk: int
) -> None:
    """The proofs that let a later import skip, after the last row, the stage index with the duplicate query
    (no number staged twice) and the scan of every open invoice against the stage (nothing missing). SQLite
    only: the batchwise work is SQLite's; PostgreSQL does all of reconcile after the last row."""
    engine = make_engine(f"sqlite:///{tmp_path / 'proof.db'}")
    migrate(engine)
    try:
        apply_snapshot(engine, stored_abc(), fixed_now)
        proofs = {case: proof(engine, fixed_now, numbers, chunk) for case, (numbers, _) in REIMPORTS.items()}
    finally:
        engine.dispose()
    # (open invoices matched, numbers proved unique, stage index made, nothing missing)
    assert proofs == {
        "all delivered": (3, True, False, True),
        "B missing": (2, True, False, False),
        "A twice, B missing": (2, False, True, False),
        "a new one, B missing": (2, True, False, False),
        "all delivered, a new one twice": (3, False, True, True),
    }


@contextmanager
def later_stage(
    engine: Engine, now: datetime, rows: list[Entry], chunk: int
) -> Iterator[tuple[Connection, Changes, Staged]]:
    """A later snapshot staged with the batch work, inside a transaction that is rolled back afterwards."""
    with engine.connect() as conn, conn.begin() as outer:
        admin_id = ensure_administration(conn, "ACME", "Acme B.V.", now)
        run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=now)
        work = batchwise_work(conn, RunContext(admin_id, run_id, now, now.date()), "invoices")
        assert isinstance(work, Changes)
        policy = StagePolicy(KINDS, IgnoreLists.from_settings(IGNORE), ZONE)
        staged = stage_source(conn, LocalRows(Snapshot("ACME", entries=iter(rows)), policy, True, chunk), work)
        yield conn, work, staged
        outer.rollback()


def proof(engine: Engine, now: datetime, numbers: list[str], chunk: int) -> tuple[int, bool, bool, bool]:
    """Stage a later snapshot of ``numbers`` with the batch work, then roll back: (open invoices that staged
    rows matched, whether no number is staged twice, whether the stage index was made, whether nothing is
    missing of the three open invoices)."""
    rows = [entry(n, invoice(number, "D1", "10.00", "10.00")) for n, number in enumerate(numbers, 2)]
    with later_stage(engine, now, rows, chunk) as (conn, work, staged):
        open_matched = conn.execute(sa.select(sa.func.count()).where(stage_matched.c.open)).scalar_one()
        index = "SELECT count(*) FROM sqlite_temp_master WHERE name = 'ix_stage_invoices_number'"
        indexed = bool(conn.exec_driver_sql(index).scalar_one())
        return open_matched, staged.known.unique_numbers, indexed, work.nothing_missing(conn, 3)


def test_the_matches_read_the_batch_first(tmp_path: Path, fixed_now: datetime) -> None:
    """Per batch, SQLite must look each staged row's number up in ``invoices``, not walk every invoice of the
    administration (by an index) and scan the unindexed stage for each: as a join with the status, it chose
    the latter once, and a 1M-row re-import did not finish in 11 minutes. The tests above are too small to
    show a plan's cost."""
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate(engine)
    try:
        with engine.connect() as conn:
            create_stage(conn)
            work = batchwise_work(conn, RunContext(1, 1, fixed_now, fixed_now.date()), "invoices")
            assert isinstance(work, Changes)
            compiled = work.match.compile(conn)
            params = {**compiled.params, "seen": 0, "last": 10}
            values = tuple(params[name] for name in compiled.positiontup or ())
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values).all()
    finally:
        engine.dispose()
    steps = [row[3] for row in plan]
    assert steps[0].startswith("SEARCH stage_invoices USING INTEGER PRIMARY KEY"), steps
    assert any("SEARCH invoices USING INDEX sqlite_autoindex_invoices_1" in step for step in steps), steps
    assert not any("ix_invoices_administration_status" in step for step in steps), steps


def test_closures_look_the_numbers_up_in_an_indexed_stage(tmp_path: Path, fixed_now: datetime) -> None:
    """With its numbers proved unique a later import makes no stage index after the last row; when an
    invoice is missing after all, the closures make it, or each open invoice would scan the whole stage."""
    engine = make_engine(f"sqlite:///{tmp_path / 'closures.db'}")
    migrate(engine)
    try:
        apply_snapshot(engine, stored_abc(), fixed_now)
        rows = [entry(n, invoice(number, "D1", "10.00", "10.00")) for n, number in enumerate(("A", "C"), 2)]
        with engine.connect() as conn, conn.begin() as outer:
            admin_id = ensure_administration(conn, "ACME", "Acme B.V.", fixed_now)
            run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=fixed_now)
            ctx = RunContext(admin_id, run_id, fixed_now, fixed_now.date())
            policy = StagePolicy(KINDS, IgnoreLists.from_settings(IGNORE), ZONE)
            source = LocalRows(Snapshot("ACME", entries=iter(rows)), policy, True)
            staged, applied = import_rows(conn, ctx, source, guards=None, ignore=policy.ignore)
            index = "SELECT count(*) FROM sqlite_temp_master WHERE name = 'ix_stage_invoices_number'"
            indexed = conn.exec_driver_sql(index).scalar_one()
            outer.rollback()
    finally:
        engine.dispose()
    assert staged.known.unique_numbers
    assert applied.counts.invoices_closed == 1
    assert indexed == 1


DEBTOR_CASES = {
    # (the later snapshot's rows as (number, debtor), (versions of debtors not stored, versions that change one))
    "the same debtors": ([("A", debtor("D1")), ("B", debtor("D1")), ("C", debtor("D1"))], (0, 0)),
    "a new debtor": ([("A", debtor("D1")), ("N", debtor("D2"))], (1, 0)),
    "a changed debtor": ([("A", debtor("D1", city="Baarn"))], (0, 1)),
    "changed on a later row": ([("A", debtor("D1")), ("B", debtor("D1", email="x@d1.nl"))], (0, 1)),
}


@pytest.mark.parametrize("case", DEBTOR_CASES)
@pytest.mark.parametrize("chunk", [1, 10_000])
def test_a_later_import_finds_new_and_changed_debtors_batch_by_batch(
    tmp_path: Path, fixed_now: datetime, chunk: int, case: str
) -> None:
    """Without a new or a changed debtor among the batches, reconcile skips inserting or updating debtors
    after the last row; the stored state is the staged path's either way."""
    rows, expected = DEBTOR_CASES[case]
    later = [entry(n, invoice(number, d.code, "10.00", "10.00"), d) for n, (number, d) in enumerate(rows, 2)]
    engine = make_engine(f"sqlite:///{tmp_path / 'finds.db'}")
    migrate(engine)
    try:
        apply_snapshot(engine, stored_abc(), fixed_now)
        with later_stage(engine, fixed_now, later, chunk) as (_, work, _):
            found = (work.debtors.new, work.debtors.changed)
    finally:
        engine.dispose()
    assert found == expected
    options = {"guards": None, "chunk": chunk}
    staged = imported(tmp_path, "staged", [stored_abc(), later], fixed_now, batchwise=False, **options)
    batchwise = imported(tmp_path, "batchwise", [stored_abc(), later], fixed_now, batchwise=True, **options)
    assert batchwise == staged
    counts = batchwise[1][1][0]
    assert (counts.debtors_created, counts.debtors_updated) == (min(expected[0], 1), min(expected[1], 1))


def bytes_written() -> int:
    """What this process has written so far, to files, pipes or sockets (Linux)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"])


def first_import_writes(tmp_path: Path, now: datetime, rows: list[Entry], bulk: bool) -> int:
    """Bytes written while ``rows`` are staged and applied into a new database, before the commit."""
    engine = make_engine(f"sqlite:///{tmp_path / f'writes-{bulk}'}.db")
    migrate(engine)
    try:
        with transaction(engine, bulk=bulk) as conn:
            admin_id = ensure_administration(conn, "ACME", "Acme B.V.", now)
            run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=now)
            lists = IgnoreLists.from_settings(IgnoreSettings())
            source = LocalRows(Snapshot("ACME", entries=iter(rows)), StagePolicy(KINDS, lists, ZONE), True, 5_000)
            before = bytes_written()
            import_rows(conn, RunContext(admin_id, run_id, now, now.date()), source, guards=None, ignore=lists)
            return bytes_written() - before
    finally:
        engine.dispose()


def test_the_batches_of_an_import_keep_no_statement_journal(tmp_path: Path, fixed_now: datetime) -> None:
    """With its foreign keys checked, each batch's INSERT … SELECT could fail halfway, so SQLite first copies
    every page it changes to a statement journal (a temporary file beyond 64 KiB); the import's transaction
    (``bulk``) with ``INSERT OR IGNORE`` cannot fail halfway and writes nothing before its commit (1M rows: 2.35
    GB written in all before, 0.92 GB after). 20,000 rows in random number order fit in the page caches."""
    numbers = random.Random(1).sample(range(10**9), 20_000)
    rows = [
        entry(n + 2, invoice(f"INV-{number:09d}", f"D{n // 5}", "10.00", "10.00"), debtor(f"D{n // 5}"))
        for n, number in enumerate(numbers)
    ]
    checked = first_import_writes(tmp_path, fixed_now, rows, bulk=False)
    unchecked = first_import_writes(tmp_path, fixed_now, rows, bulk=True)
    assert checked > 200_000
    assert unchecked < checked // 10
