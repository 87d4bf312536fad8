"""The reminder plan and the next-step decision (DOMAIN.md §5–6): pure, table-driven."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.config import Administration, ReminderSettings, SendingSettings
from gateway.plan import Delivery, Holds, InvoiceFacts, decide_next, months_before, plan_steps
from gateway.slots import make_calendar

AMS = ZoneInfo("Europe/Amsterdam")
CAL = make_calendar(Administration(code="A", name="A"))
SENDING = SendingSettings()
REMINDERS = ReminderSettings()


def ams(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=AMS)


FACTS = InvoiceFacts(
    invoice_id=1,
    debtor_id=1,
    number="INV1",
    status="open",
    kind="invoice",
    send=True,
    amount_open_cents=12_100,
    invoice_date=date(2026, 2, 27),
    due_date=date(2026, 3, 1),
    loaded_at=ams("2026-02-27 15:01"),
    sent_at=None,
    invoice_address="f@example.org",
    reminder_address="r@example.org",
)


def test_plan_hangs_off_the_frozen_due_date() -> None:
    steps = plan_steps(FACTS, replace(REMINDERS, pre_reminder_days=3), CAL)
    assert [(s.kind, s.sequence, s.day, s.slot) for s in steps] == [
        ("invoice", 1, None, ams("2026-02-27 16:30")),
        ("pre_reminder", 1, date(2026, 2, 26), ams("2026-02-26 08:00")),
        ("reminder", 1, date(2026, 3, 8), ams("2026-03-09 08:00")),  # a Sunday -> Monday
        ("reminder", 2, date(2026, 3, 22), ams("2026-03-23 08:00")),
        ("final_reminder", 1, date(2026, 4, 5), ams("2026-04-07 08:00")),  # Easter Sunday and Monday
    ]
    # The plan is the same whenever it is computed, and whatever happened in between (it never drifts).
    assert plan_steps(replace(FACTS, amount_open_cents=1), REMINDERS, CAL) == plan_steps(FACTS, REMINDERS, CAL)
    none = plan_steps(FACTS, replace(REMINDERS, count=0), CAL)
    assert [(s.kind, s.day) for s in none] == [("invoice", None), ("final_reminder", date(2026, 3, 8))]
    assert [s.kind for s in plan_steps(FACTS, replace(REMINDERS, final_reminder=False, count=1), CAL)] == [
        "invoice",
        "reminder",
    ]


def sent(kind: str, seq: int, at: str, id_: int = 1) -> Delivery:
    return Delivery(id_, kind, seq, "sent", ams(at))


INVOICE_SENT = [sent("invoice", 1, "2026-02-27 16:30")]

# (case, facts changes, deliveries, holds, now, expected (kind, sequence, state, reason-start) or None)
CASES = [
    ("waits for its slot", {}, [], Holds(), "2026-02-27 16:29", ("invoice", 1, "scheduled", None)),
    ("due at its slot", {}, [], Holds(), "2026-02-27 16:30", ("invoice", 1, "due", None)),
    ("due later in the window", {}, [], Holds(), "2026-02-27 17:59", ("invoice", 1, "due", None)),
    ("not outside the window", {}, [], Holds(), "2026-02-27 18:00", ("invoice", 1, "scheduled", None)),
    ("closed: the plan is cancelled", {"status": "paid"}, [], Holds(), "2026-02-27 16:30", None),
    (
        "paused invoice",
        {},
        [],
        Holds(pauses=(("invoice", False),)),
        "2026-02-27 16:30",
        ("invoice", 1, "held", "paused (invoice)"),
    ),
    (
        "reminders-only pause lets the invoice go",
        {},
        [],
        Holds(pauses=(("administration", True),)),
        "2026-02-27 16:30",
        ("invoice", 1, "due", None),
    ),
    (
        "reminders-only pause holds reminders",
        {},
        INVOICE_SENT,
        Holds(pauses=(("debtor D1", True),)),
        "2026-03-09 08:00",
        ("reminder", 1, "held", "paused (debtor D1, reminders only)"),
    ),
    (
        "no e-mail address",
        {"invoice_address": None},
        [],
        Holds(),
        "2026-02-27 16:30",
        ("invoice", 1, "held", "no e-mail address"),
    ),
    (
        "bounced address",
        {},
        [],
        Holds(bounced=frozenset({"f@example.org"})),
        "2026-02-27 16:30",
        ("invoice", 1, "held", "bounced address"),
    ),
    (
        "below the minimum",
        {"amount_open_cents": 499},
        [],
        Holds(),
        "2026-02-27 16:30",
        ("invoice", 1, "held", "open amount below the minimum of 5.00"),
    ),
    (
        "sent_at delivered: reminders go",
        {"sent_at": ams("2026-02-27 10:00")},
        [],
        Holds(),
        "2026-03-09 08:00",
        ("reminder", 1, "due", None),
    ),
    (
        "too old at first import",
        {"invoice_date": date(2026, 1, 26)},
        [],
        Holds(),
        "2026-02-27 16:30",
        ("reminder", 1, "scheduled", None),
    ),
    (
        "a month old is not too old",
        {"invoice_date": date(2026, 1, 27)},
        [],
        Holds(),
        "2026-02-27 16:30",
        ("invoice", 1, "due", None),
    ),
    (
        "debtor: do not send invoices",
        {},
        [],
        Holds(no_invoices=True),
        "2026-02-27 16:30",
        ("reminder", 1, "scheduled", None),
    ),
    ("kind policy does not send", {"send": False}, [], Holds(), "2026-02-27 16:30", None),
    ("ignored after import", {"ignored": True}, [], Holds(), "2026-02-27 16:30", None),
    ("reminder 1 on its day", {}, INVOICE_SENT, Holds(), "2026-03-09 08:00", ("reminder", 1, "due", None)),
    ("reminder 1 not on Saturday", {}, INVOICE_SENT, Holds(), "2026-03-14 10:00", ("reminder", 1, "scheduled", None)),
    (
        "paid in part: reminders go on",
        {"amount_open_cents": 100},
        INVOICE_SENT,
        Holds(),
        "2026-03-09 08:00",
        ("reminder", 1, "due", None),
    ),
    (
        "credit note: no reminders",
        {"amount_open_cents": -500, "kind": "credit_note"},
        INVOICE_SENT,
        Holds(),
        "2026-03-09 08:00",
        None,
    ),
    (
        "an unknown delivery blocks what follows",
        {},
        [Delivery(7, "invoice", 1, "unknown")],
        Holds(),
        "2026-03-09 08:00",
        ("invoice", 1, "busy", "delivery unknown"),
    ),
    (
        "a failed invoice does not block reminders",
        {},
        [Delivery(7, "invoice", 1, "failed")],
        Holds(),
        "2026-03-09 08:00",
        ("reminder", 1, "due", None),
    ),
    (
        "final reminder",
        {},
        [*INVOICE_SENT, sent("reminder", 1, "2026-03-09 08:00"), sent("reminder", 2, "2026-03-23 08:00")],
        Holds(),
        "2026-04-07 08:00",
        ("final_reminder", 1, "due", None),
    ),
    (
        "no final reminder for this debtor",
        {},
        [*INVOICE_SENT, sent("reminder", 1, "2026-03-09 08:00"), sent("reminder", 2, "2026-03-23 08:00")],
        Holds(no_final_reminder=True),
        "2026-04-07 08:00",
        ("final_reminder", 1, "held", "debtor: no final reminder"),
    ),
    (
        "all done",
        {},
        [
            *INVOICE_SENT,
            sent("reminder", 1, "2026-03-09 08:00"),
            sent("reminder", 2, "2026-03-23 08:00"),
            sent("final_reminder", 1, "2026-04-07 08:00"),
        ],
        Holds(),
        "2026-05-01 08:00",
        None,
    ),
    # Late (the gateway was down): in order, never two steps of one invoice in the same slot.
    ("late: the first missed step goes", {}, INVOICE_SENT, Holds(), "2026-04-08 09:10", ("reminder", 1, "due", None)),
    (
        "late: the next one not in the same slot",
        {},
        [*INVOICE_SENT, sent("reminder", 1, "2026-04-08 09:10")],
        Holds(),
        "2026-04-08 09:20",
        ("reminder", 2, "scheduled", None),
    ),
    (
        "late: the next one in the next slot",
        {},
        [*INVOICE_SENT, sent("reminder", 1, "2026-04-08 09:10")],
        Holds(),
        "2026-04-08 09:30",
        ("reminder", 2, "due", None),
    ),
    (
        "a retry row is claimed again",
        {},
        [Delivery(9, "invoice", 1, "scheduled")],
        Holds(),
        "2026-02-27 16:30",
        ("invoice", 1, "due", None),
    ),
]


@pytest.mark.parametrize(("case", "changes", "rows", "holds", "now", "expected"), CASES, ids=[c[0] for c in CASES])
def test_next_step(
    case: str,
    changes: dict[str, object],
    rows: list[Delivery],
    holds: Holds,
    now: str,
    expected: tuple[object, ...] | None,
) -> None:
    facts = replace(FACTS, **changes)  # type: ignore[arg-type]
    sending = replace(SENDING, min_invoice_cents=500)
    decision = decide_next(facts, rows, holds, ams(now), CAL, sending, REMINDERS)
    nxt = decision.next
    if expected is None:
        assert nxt is None, case
        return
    assert nxt is not None, case
    kind, seq, state, reason = expected
    assert (nxt.step.kind, nxt.step.sequence, nxt.state) == (kind, seq, state), case
    if reason is None:
        assert nxt.reason is None
    else:
        assert nxt.reason is not None and nxt.reason.startswith(str(reason)), nxt.reason
    if state == "scheduled":
        assert nxt.scheduled_for > ams(now)


def test_skips_are_reported_with_their_reason() -> None:
    decision = decide_next(
        replace(FACTS, sent_at=ams("2026-02-27 10:00")), [], Holds(), ams("2026-03-01 12:00"), CAL, SENDING, REMINDERS
    )
    assert [(s.kind, why) for s, why in decision.skipped] == [
        ("invoice", "already sent by the bookkeeping (sent_at in the import)")
    ]
    # Imported long after the due date: the steps planned before the import are skipped, not sent in a burst.
    late = replace(FACTS, loaded_at=ams("2026-03-25 10:00"), invoice_date=date(2026, 3, 1))
    decision = decide_next(late, [], Holds(), ams("2026-03-25 11:00"), CAL, SENDING, REMINDERS)
    assert decision.next is not None and decision.next.step.kind == "invoice" and decision.next.state == "due"
    done = [sent("invoice", 1, "2026-03-25 11:00")]
    decision = decide_next(late, done, Holds(), ams("2026-03-26 09:00"), CAL, SENDING, REMINDERS)
    assert [(s.kind, s.sequence, why) for s, why in decision.skipped] == [
        ("reminder", 1, "planned before the first import"),
        ("reminder", 2, "planned before the first import"),
    ]
    assert decision.next is not None and decision.next.step.kind == "final_reminder"
    assert decision.next.scheduled_for == ams("2026-04-07 08:00")
    # A pre-reminder is pointless once the due date has come.
    pre = replace(REMINDERS, pre_reminder_days=3)
    early = replace(FACTS, loaded_at=ams("2026-02-20 10:00"), invoice_date=date(2026, 2, 20))
    decision = decide_next(early, [], Holds(), ams("2026-02-26 09:00"), CAL, SENDING, pre)
    assert decision.next is not None and decision.next.step.kind == "invoice"  # it was never sent: first
    invoiced = [sent("invoice", 1, "2026-02-20 11:00")]
    decision = decide_next(early, invoiced, Holds(), ams("2026-02-26 09:00"), CAL, SENDING, pre)
    assert decision.next is not None and (decision.next.step.kind, decision.next.state) == ("pre_reminder", "due")
    decision = decide_next(early, invoiced, Holds(), ams("2026-03-02 09:00"), CAL, SENDING, pre)
    assert ("pre_reminder", "the due date has come") in [(s.kind, why) for s, why in decision.skipped]
    # A step superseded by a later one that was done is never sent afterwards.
    decision = decide_next(
        FACTS, [sent("reminder", 1, "2026-03-09 08:00")], Holds(), ams("2026-03-10 09:00"), CAL, SENDING, REMINDERS
    )
    assert decision.skipped[0][1] == "superseded by a later step"
    assert decision.next is not None and decision.next.step.sequence == 2


def test_months_before() -> None:
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert months_before(date(2026, 1, 15), 1) == date(2025, 12, 15)
    assert months_before(date(2026, 1, 15), 13) == date(2024, 12, 15)
    assert months_before(date(2026, 1, 15), 0) == date(2026, 1, 15)


def test_scheduled_time_of_a_step_waiting_for_the_window() -> None:
    decision = decide_next(FACTS, [], Holds(), ams("2026-02-27 19:00"), CAL, SENDING, REMINDERS)
    assert decision.next is not None and decision.next.scheduled_for == ams("2026-02-28 08:00")
    assert decision.next.scheduled_for - ams("2026-02-27 19:00") == timedelta(hours=13)
