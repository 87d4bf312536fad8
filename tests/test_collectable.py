"""Collectable (DOMAIN.md §6): after the final reminder's deadline, unless the debtor has an open credit note;
the pure decision, then the `invoices` view on SQLite and PostgreSQL with its reason and the interest due."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from gateway.collection import decide_collectable
from gateway.config import Administration, Config
from gateway.interest import RatePeriod
from gateway.store import transaction
from gateway.tables import administrations, debtors, deliveries, invoices
from gateway.views import list_invoices

TODAY = date(2026, 5, 13)


@pytest.mark.parametrize(
    ("status", "deadline", "credit_notes", "expected"),
    [
        ("open", date(2026, 5, 12), [], (True, None)),
        ("open", date(2026, 5, 12), ["2026-0099"], (False, "open credit note 2026-0099")),
        ("open", date(2026, 5, 12), ["CN2", "CN1"], (False, "open credit notes CN1, CN2")),
        ("open", date(2026, 5, 12), ["C4", "C3", "C2", "C1"], (False, "open credit notes C1, C2, C3 and 1 more")),
        # the deadline is the last day of the term: collectable from the day after it
        ("open", TODAY, [], (False, "the final reminder's term runs until 2026-05-13")),
        ("open", TODAY, ["2026-0099"], (False, "the final reminder's term runs until 2026-05-13")),
        ("open", None, [], (False, "no final reminder sent")),
        ("paid", date(2026, 5, 1), [], (False, None)),
    ],
)
def test_decide_collectable(
    status: str, deadline: date | None, credit_notes: list[str], expected: tuple[bool, str | None]
) -> None:
    assert decide_collectable(status, deadline, TODAY, credit_notes) == expected


NOW = datetime(2026, 5, 13, 7, 0, tzinfo=UTC)  # 09:00 in Amsterdam
LOADED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# debtor id: (code, is_company)
DEBTORS = {1: ("D1", False), 2: ("D2", True), 3: ("D3", False), 4: ("D4", False), 5: ("D5", True)}
# number: (debtor id, due date, open cents, status, final reminder deadline or None)
INVOICES = {
    "I1": (1, date(2026, 4, 10), 12_100, "open", date(2026, 5, 12)),  # blocked by the credit note below
    "2026-0099": (1, date(2026, 4, 20), -2_500, "open", None),  # an open credit note of D1
    "I2": (2, date(2026, 4, 1), 100_000, "open", date(2026, 5, 1)),  # a company: the commercial rate
    "I3": (3, date(2026, 4, 10), 50_000, "open", date(2026, 5, 12)),
    "CN3": (3, date(2026, 4, 1), 0, "paid", None),  # a settled credit note blocks nothing
    "I4": (4, date(2026, 4, 20), 30_000, "open", date(2026, 5, 20)),  # the term still runs
    "I5": (5, date(2025, 12, 15), 40_000, "open", date(2026, 5, 1)),  # due before the configured rates
    "I6": (4, date(2026, 4, 25), 10_000, "open", None),
    "I7": (3, date(2026, 3, 1), 0, "paid", date(2026, 4, 1)),
}


def seed(engine: Engine) -> None:
    with transaction(engine) as conn:
        conn.execute(administrations.insert().values(id=1, code="ACME", name="Acme", created_at=LOADED))
        conn.execute(
            debtors.insert(),
            [
                {"id": i, "administration_id": 1, "code": code, "company_name": code if company else None,
                 "lastname": None if company else code, "is_company": company, "email": f"{code}@example.org",
                 "created_run_id": 0, "updated_run_id": 0}
                for i, (code, company) in DEBTORS.items()
            ],
        )  # fmt: skip
        for number, (debtor, due, open_cents, status, deadline) in INVOICES.items():
            invoice_id = conn.execute(
                invoices.insert().values(
                    administration_id=1, debtor_id=debtor, number=number, invoice_date=date(2026, 3, 1),
                    due_date=due, amount_total_cents=open_cents or 1000, currency="EUR",
                    amount_open_cents=open_cents, kind="credit_note" if open_cents < 0 else "invoice", send=True,
                    status=status, loaded_at=LOADED, created_run_id=0, updated_run_id=0,
                )
            ).inserted_primary_key[0]  # fmt: skip
            if deadline is not None:
                conn.execute(
                    deliveries.insert().values(
                        administration_id=1, invoice_id=invoice_id, kind="final_reminder", sequence=1,
                        status="sent", scheduled_for=LOADED, sent_at=LOADED, updated_at=LOADED, deadline=deadline,
                    )
                )  # fmt: skip


def test_collectable_with_reasons_and_interest_in_the_invoices_view(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    config = Config(
        data_dir=tmp_path,
        database_url="",
        administrations={"ACME": Administration(code="ACME", name="Acme")},
        interest_rates=(RatePeriod(date(2026, 1, 1), Decimal("4.0"), Decimal("10.15")),),
    )
    with transaction(engine, write=False) as conn:
        rows = {r["number"]: r for r in list_invoices(conn, config, NOW, status="all")}
    fields = ("collectable", "collectable_reason", "interest_due", "interest_note")
    got = {n: tuple(r[f] for f in fields) for n, r in rows.items()}
    assert got == {
        "I1": (False, "open credit note 2026-0099", None, None),
        "2026-0099": (False, "no final reminder sent", None, None),
        # 2 April .. 13 May = 29 + 13 = 42 days at 10.15 %: 1000 × 10.15 × 42 / 36500 = 11.6795
        "I2": (True, None, "11.68", None),
        # 11 April .. 13 May = 20 + 13 = 33 days at 4 %: 500 × 4 × 33 / 36500 = 1.8082
        "I3": (True, None, "1.81", None),
        "CN3": (False, None, None, None),
        "I4": (False, "the final reminder's term runs until 2026-05-20", None, None),
        "I5": (True, None, None,
               "no statutory interest rate configured for 2025-12-16 (the first period starts 2026-01-01)"),
        "I6": (False, "no final reminder sent", None, None),
        "I7": (False, None, None, None),
    }  # fmt: skip

    # Without configured rates a collectable invoice says so instead of guessing a rate.
    bare = Config(data_dir=tmp_path, database_url="", administrations=config.administrations)
    with transaction(engine, write=False) as conn:
        i2 = next(r for r in list_invoices(conn, bare, NOW) if r["number"] == "I2")
    assert i2["collectable"] is True and i2["interest_due"] is None
    assert i2["interest_note"] == "no statutory interest rates configured ([[interest.statutory]])"

    # Once the credit note is settled (an import shows it paid), I1 becomes collectable.
    with transaction(engine) as conn:
        conn.execute(
            invoices.update().where(invoices.c.number == "2026-0099").values(status="paid", amount_open_cents=0)
        )
    with transaction(engine, write=False) as conn:
        i1 = next(r for r in list_invoices(conn, config, NOW) if r["number"] == "I1")
    # 11 April .. 13 May = 33 days at 4 %: 121 × 4 × 33 / 36500 = 0.4376
    assert (i1["collectable"], i1["collectable_reason"], i1["interest_due"]) == (True, None, "0.44")
