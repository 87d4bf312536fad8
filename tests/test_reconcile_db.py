"""Reconcile on a real database (SQLite and PostgreSQL): a sequence of snapshots and the state after each."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.apply import Applied, RunContext, import_rows
from gateway.config import GuardSettings, IgnoreSettings, KindSettings
from gateway.ignore import IgnoreLists
from gateway.records import Debtor, Entry, Invoice, Snapshot
from gateway.runs import start_run
from gateway.stage_rows import CHUNK, LocalRows
from gateway.staging import StagePolicy, drop_stage, naive_utc
from gateway.store import ensure_administration, transaction
from gateway.tables import debtors, invoices, payments

ZONE = ZoneInfo("Europe/Amsterdam")
GUARDS = GuardSettings()
NO_IGNORE = IgnoreSettings()
DEFAULT_KINDS = KindSettings()


def debtor(code: str, city: str = "Utrecht", email: str | None = None) -> Debtor:
    return Debtor(
        code,
        company_name=f"Debtor {code}",
        street_1="Kerkstraat 1",
        postal_code="1234 AB",
        city=city,
        country_code="NL",
        email=email,
    )


def invoice(
    number: str,
    debtor_code: str,
    total: str,
    open_: str,
    *,
    due: date = date(2026, 3, 30),
    description: str | None = None,
    payment_condition: str | None = None,
) -> Invoice:
    return Invoice(
        number,
        debtor_code,
        date(2026, 2, 28),
        due,
        Decimal(total),
        Decimal(open_),
        "EUR",
        description=description,
        payment_condition=payment_condition,
    )


def entry(line: int, inv: Invoice, deb: Debtor | None = None) -> Entry:
    return Entry(line, deb or debtor(inv.debtor_code), inv)


@dataclass
class Outcome:
    applied: Applied
    problems: list[Any]


def apply_snapshot(
    engine: Engine,
    entries: list[Entry],
    now: datetime,
    *,
    guards: GuardSettings | None = GUARDS,
    explicit_empty: bool = False,
    blocked_invoices: tuple[str, ...] = (),
    blocked_debtors: tuple[str, ...] = (),
    error_rows: int = 0,
    ignore: IgnoreSettings = NO_IGNORE,
    kinds: KindSettings = DEFAULT_KINDS,
    batchwise: bool = True,
    chunk: int = CHUNK,
) -> Outcome:
    """What the pipeline does with a snapshot, minus the file: stage, reconcile, one transaction.
    ``batchwise=False``: a first import on SQLite does all of reconcile after the last row (``gateway.batchwise``).

    The transaction is the pipeline's (``bulk``): on SQLite without foreign-key checks. So every import here is
    checked afterwards for a key that points nowhere, which SQLite would otherwise have refused."""
    lists = IgnoreLists.from_settings(ignore)
    with transaction(engine, bulk=True) as conn:
        admin_id = ensure_administration(conn, "ACME", "Acme B.V.", now)
        run_id = start_run(conn, administration_id=admin_id, source="file", trigger="test", now=now)
        snapshot = Snapshot(
            "ACME",
            entries=iter(entries),
            rows=len(entries) + error_rows,
            blocked_invoices=set(blocked_invoices),
            blocked_debtors=set(blocked_debtors),
            explicit_empty=explicit_empty,
        )
        staged, applied = import_rows(
            conn,
            RunContext(admin_id, run_id, now, now.date()),
            LocalRows(snapshot, StagePolicy(kinds, lists, ZONE), naive_utc(conn), chunk),
            guards=guards,
            ignore=lists,
            batchwise=batchwise,
        )
        drop_stage(conn)
        outcome = Outcome(applied, [*staged.problems, *applied.problems])
    assert_no_dangling_keys(engine)
    return outcome


def assert_no_dangling_keys(engine: Engine) -> None:
    """Every foreign key points at a row (SQLite: ``PRAGMA foreign_key_check``; PostgreSQL checks its
    constraints at every statement)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def invoice_state(engine: Engine) -> dict[str, tuple[str, int, str, int, date]]:
    """number → (status, open cents, debtor code, total cents, due date)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                invoices.c.number,
                invoices.c.status,
                invoices.c.amount_open_cents,
                debtors.c.code,
                invoices.c.amount_total_cents,
                invoices.c.due_date,
            ).join(debtors, debtors.c.id == invoices.c.debtor_id)
        ).all()
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}


def payment_state(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(invoices.c.number, payments.c.amount_cents)
            .join(invoices, invoices.c.id == payments.c.invoice_id)
            .order_by(payments.c.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def debtor_field(engine: Engine, code: str, field: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(debtors.c[field]).where(debtors.c.code == code)).scalar_one()


def codes(problems: list[Any]) -> list[tuple[int | None, str | None, str]]:
    return sorted((p.row, p.column, p.code) for p in problems)


def test_snapshot_sequence(engine: Engine, fixed_now: datetime) -> None:
    # 1. First load: everything is new.
    first = [
        entry(2, invoice("A1", "D1", "100.00", "100.00")),
        entry(3, invoice("A2", "D1", "50.00", "50.00")),
        entry(4, invoice("B1", "D2", "200.00", "200.00")),
    ]
    out = apply_snapshot(engine, first, fixed_now)
    c = out.applied.counts
    assert (c.debtors_created, c.invoices_created, c.invoices_closed, c.invoices_updated) == (2, 3, 0, 0)
    assert invoice_state(engine)["A1"] == ("open", 10000, "D1", 10000, date(2026, 3, 30))

    # 2. A1 partly paid, A2 gone (paid), B1's frozen total and due date changed, new C1, D1 moved.
    second = [
        entry(2, invoice("A1", "D1", "100.00", "40.00"), debtor("D1", city="Amersfoort")),
        entry(3, invoice("B1", "D2", "250.00", "200.00", due=date(2026, 4, 30), description="Onderhoud")),
        entry(4, invoice("C1", "D3", "75.50", "75.50")),
    ]
    out = apply_snapshot(engine, second, fixed_now + timedelta(days=1))
    c = out.applied.counts
    assert (c.debtors_created, c.debtors_updated, c.invoices_created) == (1, 1, 1)
    assert (c.invoices_updated, c.invoices_closed) == (2, 1)
    state = invoice_state(engine)
    assert state["A1"][:2] == ("open", 4000)
    assert state["A2"][:2] == ("paid", 0)
    assert state["B1"] == ("open", 20000, "D2", 20000, date(2026, 3, 30)), "frozen fields keep the stored value"
    assert payment_state(engine) == [("A1", 6000), ("A2", 5000)]
    assert codes(out.problems) == [
        (3, "invoice_due_date", "frozen_field_changed"),
        (3, "invoice_total_amount_inc_vat", "frozen_field_changed"),
    ]
    assert debtor_field(engine, "D1", "city") == "Amersfoort"

    # 3. A row with an error for C1 (blocked): C1 is neither closed nor updated; D3 not updated.
    third = [
        entry(2, invoice("A1", "D1", "100.00", "40.00"), debtor("D1", city="Amersfoort")),
        entry(3, invoice("B1", "D2", "200.00", "200.00")),
        entry(5, invoice("N9", "D3", "10.00", "10.00"), debtor("D3", city="Zwolle")),
    ]
    out = apply_snapshot(
        engine, third, fixed_now + timedelta(days=2), blocked_invoices=("C1",), blocked_debtors=("D3",), error_rows=1
    )
    assert invoice_state(engine)["C1"][:2] == ("open", 7550)
    assert debtor_field(engine, "D3", "city") == "Utrecht", "a debtor with a row error gets no update"
    assert out.applied.counts.invoices_closed == 0

    # 4. An invoice paid earlier that comes back open is reopened; the payment is reversed.
    fourth = [
        *third,
        entry(6, invoice("A2", "D1", "50.00", "50.00"), debtor("D1", city="Amersfoort")),
        entry(7, invoice("C1", "D3", "75.50", "75.50")),
    ]
    out = apply_snapshot(engine, fourth, fixed_now + timedelta(days=3))
    assert invoice_state(engine)["A2"][:2] == ("open", 5000)
    assert payment_state(engine)[-1] == ("A2", -5000)

    # 5. An open amount of zero is a valid row: the invoice is paid.
    fifth = [
        replace(e, invoice=replace(e.invoice, amount_open=Decimal("0"))) if e.invoice.number == "A1" else e
        for e in fourth
    ]
    out = apply_snapshot(engine, fifth, fixed_now + timedelta(days=4))
    assert invoice_state(engine)["A1"][:2] == ("paid", 0)
    assert out.applied.counts.invoices_closed == 1


def _many(n: int, prefix: str = "M") -> list[Entry]:
    return [entry(i + 2, invoice(f"{prefix}{i}", f"D{i % 7}", "10.00", "10.00")) for i in range(n)]


def test_drop_guard_holds_then_release_applies(engine: Engine, fixed_now: datetime) -> None:
    apply_snapshot(engine, _many(30), fixed_now)
    out = apply_snapshot(engine, _many(5), fixed_now + timedelta(hours=1))
    assert out.applied.held and "25 of 30" in out.applied.held
    assert sum(s[0] == "open" for s in invoice_state(engine).values()) == 30, "a held run changes nothing"
    out = apply_snapshot(engine, _many(5), fixed_now + timedelta(hours=2), guards=None)
    assert out.applied.held is None and out.applied.counts.invoices_closed == 25
    assert sum(s[0] == "open" for s in invoice_state(engine).values()) == 5


def test_drop_guard_lets_small_drops_through(engine: Engine, fixed_now: datetime) -> None:
    apply_snapshot(engine, _many(30), fixed_now)
    out = apply_snapshot(engine, _many(19), fixed_now + timedelta(hours=1), guards=GuardSettings(max_close_ratio=0.3))
    assert out.applied.held is None, "11 of 30 closes is below max_close_min=20"
    assert out.applied.counts.invoices_closed == 11


def test_empty_file_is_held_unless_explicitly_empty(engine: Engine, fixed_now: datetime) -> None:
    apply_snapshot(engine, _many(3), fixed_now)
    out = apply_snapshot(engine, [], fixed_now + timedelta(hours=1))
    assert out.applied.held and out.applied.held.startswith("empty file")
    assert all(s[0] == "open" for s in invoice_state(engine).values())
    out = apply_snapshot(
        engine, [], fixed_now + timedelta(hours=2), explicit_empty=True, guards=GuardSettings(max_close_ratio=1.0)
    )
    assert out.applied.held is None and out.applied.counts.invoices_closed == 3


def test_duplicate_numbers_are_errors_on_every_copy(engine: Engine, fixed_now: datetime) -> None:
    apply_snapshot(engine, [entry(2, invoice("X1", "D1", "10.00", "10.00"))], fixed_now)
    dup = [
        entry(2, invoice("X1", "D1", "10.00", "5.00")),
        entry(3, invoice("Y1", "D2", "10.00", "10.00")),
        entry(4, invoice("X1", "D1", "10.00", "1.00")),
    ]
    out = apply_snapshot(engine, dup, fixed_now + timedelta(hours=1))
    assert codes(out.problems) == [
        (2, "invoice_number", "duplicate_invoice_number"),
        (4, "invoice_number", "duplicate_invoice_number"),
    ]
    assert invoice_state(engine)["X1"][:2] == ("open", 1000), "neither updated nor closed"
    assert "Y1" in invoice_state(engine)


def test_conflicting_debtor_data_warns_and_last_row_wins(engine: Engine, fixed_now: datetime) -> None:
    rows = [
        entry(2, invoice("A1", "D1", "10.00", "10.00"), debtor("D1", city="Utrecht")),
        entry(3, invoice("A2", "D1", "10.00", "10.00"), debtor("D1", city="Zeist")),
    ]
    out = apply_snapshot(engine, rows, fixed_now)
    assert codes(out.problems) == [(3, "debtor_code", "conflicting_debtor_data")]
    assert debtor_field(engine, "D1", "city") == "Zeist"


def test_empty_cell_keeps_the_stored_value(engine: Engine, fixed_now: datetime) -> None:
    apply_snapshot(engine, [entry(2, invoice("A1", "D1", "10.00", "10.00"), debtor("D1", email="a@b.nl"))], fixed_now)
    apply_snapshot(engine, [entry(2, invoice("A1", "D1", "10.00", "10.00"), debtor("D1"))], fixed_now)
    assert debtor_field(engine, "D1", "email") == "a@b.nl"


def test_ignore_lists(engine: Engine, fixed_now: datetime) -> None:
    ignore = IgnoreSettings(invoices=("TMP*", "(100..199)"), debtors=("D9",), payment_conditions=("CONTANT",))
    rows = [
        entry(2, invoice("TMP-1", "D1", "10.00", "10.00")),
        entry(3, invoice("150", "D1", "10.00", "10.00")),
        entry(4, invoice("200", "D1", "10.00", "10.00")),
        entry(5, invoice("K1", "D9", "10.00", "10.00")),
        entry(6, invoice("K2", "D1", "10.00", "10.00", payment_condition="CONTANT")),
    ]
    out = apply_snapshot(engine, rows, fixed_now, ignore=ignore)
    assert set(invoice_state(engine)) == {"200"}
    assert out.applied.counts.ignored == 4
    # An item that becomes ignored after its import is frozen: not updated, not closed.
    out = apply_snapshot(
        engine, [entry(2, invoice("300", "D1", "10.00", "10.00"))], fixed_now, ignore=IgnoreSettings(invoices=("200",))
    )
    assert invoice_state(engine)["200"][0] == "open"
    assert out.applied.counts.invoices_closed == 0


def test_invoice_kinds(engine: Engine, fixed_now: datetime) -> None:
    kinds = KindSettings(zero_amount="skip", prepaid="import_no_send", credit_note="import_and_send")
    rows = [
        entry(2, invoice("CR1", "D1", "-25.00", "-25.00")),
        entry(3, invoice("Z1", "D1", "0.00", "0.00")),
        entry(4, invoice("P1", "D1", "30.00", "0.00")),
        entry(5, invoice("I1", "D1", "30.00", "30.00")),
    ]
    apply_snapshot(engine, rows, fixed_now, kinds=kinds)
    with engine.connect() as conn:
        got = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute(sa.select(invoices.c.number, invoices.c.kind, invoices.c.send, invoices.c.status))
        }
    assert got == {
        "CR1": ("credit_note", True, "open"),
        "P1": ("prepaid", False, "paid"),
        "I1": ("invoice", True, "open"),
    }


def test_a_later_import_sets_a_delivered_sent_at_as_a_new_one_stores_it(engine: Engine, fixed_now: datetime) -> None:
    """A sent_at delivered for a stored invoice is written in the form a new invoice's is (naive UTC on
    SQLite, aware on PostgreSQL): read back, both are the same moment, and on SQLite the same text."""
    sent = datetime(2026, 3, 1, 10, 15, tzinfo=ZONE)
    apply_snapshot(engine, [entry(2, invoice("A", "D1", "10.00", "10.00"))], fixed_now)
    later = [
        entry(2, replace(invoice("A", "D1", "10.00", "4.00"), sent_at=sent)),
        entry(3, replace(invoice("B", "D1", "10.00", "10.00"), sent_at=sent)),
    ]
    outcome = apply_snapshot(engine, later, fixed_now + timedelta(hours=1))
    assert (outcome.applied.counts.invoices_updated, outcome.applied.counts.invoices_created) == (1, 1)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(invoices.c.number, invoices.c.sent_at)).all())
        raw = dict(conn.exec_driver_sql("SELECT number, CAST(sent_at AS TEXT) FROM invoices").all())
    assert stored == {"A": sent, "B": sent}
    assert raw["A"] == raw["B"]
