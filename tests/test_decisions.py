"""The pure decisions of reconcile and the ignore lists, table-driven."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.config import GuardSettings, KindSettings
from gateway.ignore import compile_rules
from gateway.reconcile import (
    MUTABLE_INVOICE_FIELDS,
    IncomingInvoice,
    StoredInvoice,
    decide_guard,
    decide_invoice_update,
    decide_kind,
    format_cents,
)

NONE = (None,) * len(MUTABLE_INVOICE_FIELDS)


@pytest.mark.parametrize(
    ("rows", "explicit", "open_count", "to_close", "held"),
    [
        (0, False, 10, 10, "empty file"),  # an empty file would close everything
        (0, True, 10, 10, None),  # explicitly empty passes the empty-file guard…
        (0, True, 30, 30, "drop guard"),  # …but not the drop guard
        (0, False, 0, 0, None),  # nothing open: an empty file destroys nothing
        (100, False, 100, 30, None),  # exactly 30 % is allowed
        (100, False, 100, 31, "drop guard"),
        (100, False, 60, 19, None),  # more than 30 % but fewer than 20 invoices
        (100, False, 60, 20, "drop guard"),
        (5, False, 1000, 5, None),
    ],
)
def test_decide_guard(rows: int, explicit: bool, open_count: int, to_close: int, held: str | None) -> None:
    reason = decide_guard(
        rows=rows, explicit_empty=explicit, open_count=open_count, to_close=to_close, guards=GuardSettings()
    )
    assert (reason.split(":")[0] if reason else None) == held


def test_decide_guard_can_be_switched_off() -> None:
    off = GuardSettings(empty_file=False, max_close_ratio=1.0)
    assert decide_guard(rows=0, explicit_empty=False, open_count=50, to_close=50, guards=off) is None


@pytest.mark.parametrize(
    ("total", "open_", "kind", "policy"),
    [
        (1000, 1000, "invoice", "import_and_send"),
        (1000, 400, "invoice", "import_and_send"),
        (-500, -500, "credit_note", "import_and_send"),
        (0, 0, "zero_amount", "skip"),
        (1000, 0, "prepaid", "import_no_send"),
    ],
)
def test_decide_kind(total: int, open_: int, kind: str, policy: str) -> None:
    kinds = KindSettings(zero_amount="skip", prepaid="import_no_send", credit_note="import_and_send")
    assert decide_kind(total, open_, kinds) == (kind, policy)


def stored(**kw: object) -> StoredInvoice:
    base: dict[str, object] = dict(
        id=1,
        number="A1",
        debtor_code="D1",
        invoice_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
        amount_total_cents=10000,
        currency="EUR",
        amount_open_cents=10000,
        status="open",
        mutable=NONE,
    )
    return StoredInvoice(**{**base, **kw})  # type: ignore[arg-type]


def incoming(**kw: object) -> IncomingInvoice:
    base: dict[str, object] = dict(
        line=7,
        number="A1",
        debtor_code="D1",
        invoice_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
        amount_total_cents=10000,
        currency="EUR",
        amount_open_cents=10000,
        mutable=NONE,
    )
    return IncomingInvoice(**{**base, **kw})  # type: ignore[arg-type]


def test_unchanged_invoice_is_not_updated() -> None:
    decision = decide_invoice_update(stored(), incoming())
    assert not decision.changed and not decision.warnings and decision.payment_cents == 0


def test_partial_payment_is_derived() -> None:
    decision = decide_invoice_update(stored(), incoming(amount_open_cents=2500))
    assert decision.changed and decision.payment_cents == 7500 and decision.values == {"amount_open_cents": 2500}


def test_open_zero_closes_and_reopening_reverses() -> None:
    closed = decide_invoice_update(stored(), incoming(amount_open_cents=0))
    assert closed.closed and closed.values["status"] == "paid" and closed.payment_cents == 10000
    reopened = decide_invoice_update(stored(status="paid", amount_open_cents=0), incoming())
    assert reopened.reopened and reopened.payment_cents == -10000


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"invoice_date": date(2026, 1, 2)}, "invoice_date"),
        ({"due_date": date(2026, 2, 28)}, "invoice_due_date"),
        ({"amount_total_cents": 12000}, "invoice_total_amount_inc_vat"),
        ({"currency": "USD"}, "invoice_currency_code"),
        ({"debtor_code": "D2"}, "debtor_code"),
    ],
)
def test_frozen_field_change_is_a_warning_and_kept(change: dict[str, object], column: str) -> None:
    decision = decide_invoice_update(stored(), incoming(**change))
    assert [(w.row, w.column, w.code) for w in decision.warnings] == [(7, column, "frozen_field_changed")]
    assert not decision.changed


def test_mutable_fields_follow_the_source_but_empty_keeps() -> None:
    new = ("Onderhoud",) + (None,) * (len(MUTABLE_INVOICE_FIELDS) - 1)
    decision = decide_invoice_update(stored(), incoming(mutable=new))
    assert decision.values == {"description": "Onderhoud"}
    assert not decide_invoice_update(stored(mutable=new), incoming()).changed


@pytest.mark.parametrize(
    ("entries", "value", "hit"),
    [
        (["123"], "123", True),
        (["123"], "1234", False),
        (["ABC*"], "ABC-9", True),
        (["ABC*"], "XABC", False),
        (["(1..7)"], "5", True),
        (["(1..7)"], "8", False),
        (["(7..1)"], "3", True),
        (["(1..7)"], "5a", False),
        ([], "anything", False),
    ],
)
def test_ignore_rules(entries: list[str], value: str, hit: bool) -> None:
    assert compile_rules(entries).matches(value) is hit


@pytest.mark.parametrize(("cents", "text"), [(0, "0.00"), (5, "0.05"), (123456, "1234.56"), (-1250, "-12.50")])
def test_format_cents(cents: int, text: str) -> None:
    assert format_cents(cents) == text
