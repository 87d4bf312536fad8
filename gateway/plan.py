"""What an invoice's next message is, and whether it may go now (DOMAIN.md §5–7). Pure decisions.

The plan of an invoice is a fixed sequence of steps: the invoice itself, an optional pre-reminder, reminders
1..n and the final reminder. Every step's day hangs off frozen data only (the load time, the frozen due
date), so recomputing the plan at every pass gives the same plan: it never drifts. The deliveries table says
which steps are done. The *next* step is the first one that is neither done nor skipped; it is ``due`` (send
it now), ``scheduled`` (later), ``held`` (a hold or block with its reason) or ``busy`` (a delivery of it is
in flight or unknown: nothing after it moves until an operator resolves it).

Decisions that the specification leaves open [D]:
- A reminder step planned for a day before the invoice's first import is skipped ("planned before the first
  import"): going live on an old ledger sends no burst of stale reminders; the plan continues with the first
  step after the import. A pre-reminder is skipped once the due date has come.
- A step is skipped when a later step is already done (it was superseded; it is never sent afterwards).
- Reminders are only for a positive open amount (a credit note gets its invoice message only).
- Late steps (the gateway was down) go in order, one per slot: a step never goes in the same slot as the
  previous step of the same invoice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

from gateway.config import ReminderSettings, SendingSettings
from gateway.slots import Calendar, day_slot, first_open_slot, floor_to_slot, invoice_slot, is_open, local_day

REMINDER_KINDS = ("pre_reminder", "reminder", "final_reminder")
DONE = ("sent", "failed", "cancelled")
BUSY = ("claimed", "sending", "unknown")


@dataclass(frozen=True)
class Step:
    kind: str
    sequence: int
    slot: datetime  # the first open slot of the step's planned moment
    day: date | None = None  # reminders: the planned day


@dataclass(frozen=True)
class InvoiceFacts:
    """What the sender knows of one invoice and its debtor (read from the business tables)."""

    invoice_id: int
    debtor_id: int
    number: str
    status: str
    kind: str
    send: bool
    amount_open_cents: int
    invoice_date: date
    due_date: date
    loaded_at: datetime
    sent_at: datetime | None
    invoice_address: str | None
    reminder_address: str | None
    ignored: bool = False
    document_missing: bool = False


@dataclass(frozen=True)
class Holds:
    """The holds that apply to one invoice: pauses as (scope, reminders_only), debtor flags, bounces."""

    pauses: tuple[tuple[str, bool], ...] = ()
    no_invoices: bool = False
    no_final_reminder: bool = False
    bounced: frozenset[str] = frozenset()

    def pause_reason(self, kind: str) -> str | None:
        for scope, reminders_only in self.pauses:
            if not reminders_only:
                return f"paused ({scope})"
            if kind in REMINDER_KINDS:
                return f"paused ({scope}, reminders only)"
        return None

    @property
    def paused(self) -> bool:
        return bool(self.pauses)


@dataclass(frozen=True)
class Delivery:
    """A row of the deliveries table, as far as planning cares."""

    id: int
    kind: str
    sequence: int
    status: str
    sent_at: datetime | None = None


@dataclass(frozen=True)
class Next:
    step: Step
    state: str  # due | scheduled | held | busy
    scheduled_for: datetime
    recipient: str | None
    reason: str | None = None
    retry_id: int | None = None  # an existing row left 'scheduled' by a transient failure


@dataclass(frozen=True)
class Decision:
    next: Next | None
    skipped: tuple[tuple[Step, str], ...] = field(default=())


def months_before(day: date, months: int) -> date:
    """``day`` minus whole calendar months (31 March − 1 month = 28/29 February)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def plan_steps(facts: InvoiceFacts, reminders: ReminderSettings, cal: Calendar) -> list[Step]:
    """Every step of the invoice's plan, in order, with its first open slot."""
    return list(_plan(facts.loaded_at, facts.due_date, reminders, cal))


@lru_cache(maxsize=65_536)
def _plan(loaded_at: datetime, due: date, reminders: ReminderSettings, cal: Calendar) -> tuple[Step, ...]:
    """The plan depends on frozen data only, so it is computed once per (load time, due date, settings)."""
    steps = [Step("invoice", 1, invoice_slot(loaded_at, cal))]
    days: list[tuple[str, int, date]] = []
    if reminders.pre_reminder_days:
        days.append(("pre_reminder", 1, due - timedelta(days=reminders.pre_reminder_days)))
    first, interval = reminders.first_after_days, reminders.interval_days
    for k in range(1, reminders.count + 1):
        days.append(("reminder", k, due + timedelta(days=first + (k - 1) * interval)))
    if reminders.final_reminder:  # interval after the last reminder; first_after_days when there are none
        days.append(("final_reminder", 1, due + timedelta(days=first + reminders.count * interval)))
    steps.extend(Step(kind, seq, day_slot(day, kind, cal), day) for kind, seq, day in days)
    return tuple(steps)


def _skip_reason(
    step: Step, facts: InvoiceFacts, sending: SendingSettings, holds: Holds, days: tuple[date, date]
) -> str | None:
    """Why ``step`` is never to be sent (a permanent skip), or None. ``days``: the local days of the first
    import and of now."""
    loaded_day, today = days
    if not facts.send:
        return f"the kind policy does not send {facts.kind.replace('_', ' ')}s"
    if facts.ignored:
        return "ignored by the administration's ignore list"
    if step.kind == "invoice":
        if facts.sent_at is not None:
            return "already sent by the bookkeeping (sent_at in the import)"
        if sending.max_age_months and facts.invoice_date < months_before(loaded_day, sending.max_age_months):
            return "too old to send: invoice date more than a month before its first import"
        if holds.no_invoices:
            return "debtor: do not send invoices"
        return None
    if facts.amount_open_cents <= 0:
        return "nothing to remind: no positive open amount"
    assert step.day is not None
    if step.day < loaded_day:
        return "planned before the first import"
    if step.kind == "pre_reminder" and today >= facts.due_date:
        return "the due date has come"
    return None


def _hold_reason(
    step: Step, facts: InvoiceFacts, sending: SendingSettings, reminders: ReminderSettings, holds: Holds
) -> tuple[str | None, str | None]:
    """(reason the step is held now, its recipient). Holds are re-evaluated at every pass."""
    recipient = facts.invoice_address if step.kind == "invoice" else facts.reminder_address
    reason = holds.pause_reason(step.kind)
    if reason:
        return reason, recipient
    if step.kind == "final_reminder" and holds.no_final_reminder:
        return "debtor: no final reminder", recipient
    if step.kind == "invoice" and facts.document_missing:
        return "document missing", recipient
    minimum = {
        "invoice": sending.min_invoice_cents,
        "final_reminder": reminders.min_final_reminder_cents,
    }.get(step.kind, reminders.min_reminder_cents)
    if minimum and facts.amount_open_cents < minimum:
        return f"open amount below the minimum of {minimum // 100}.{minimum % 100:02d}", recipient
    if not recipient:
        return "no e-mail address", recipient
    if recipient.lower() in holds.bounced:
        return f"bounced address {recipient}", recipient
    return None, recipient


def decide_next(
    facts: InvoiceFacts,
    deliveries: list[Delivery],
    holds: Holds,
    now: datetime,
    cal: Calendar,
    sending: SendingSettings,
    reminders: ReminderSettings,
) -> Decision:
    """The invoice's next step and whether it goes now. A closed invoice has none: its plan is cancelled."""
    if facts.status != "open":
        return Decision(None)
    rows = {(d.kind, d.sequence): d for d in deliveries}
    steps = plan_steps(facts, reminders, cal)
    done_at = [i for i, s in enumerate(steps) if (s.kind, s.sequence) in rows]
    last_done = max(done_at, default=-1)
    skipped: list[tuple[Step, str]] = []
    days = (local_day(facts.loaded_at, cal), local_day(now, cal))
    previous_sent: datetime | None = None
    for index, step in enumerate(steps):
        row = rows.get((step.kind, step.sequence))
        if row is not None and row.status in DONE:
            if row.status == "sent" and row.sent_at is not None:
                previous_sent = row.sent_at
            continue
        if row is not None and row.status in BUSY:
            busy = "delivery unknown: resolve it with `outbox resolve`" if row.status == "unknown" else "being sent"
            return Decision(Next(step, "busy", step.slot, None, busy), tuple(skipped))
        skip = _skip_reason(step, facts, sending, holds, days)
        if skip is None and index < last_done:
            skip = "superseded by a later step"
        if skip:
            skipped.append((step, skip))
            continue
        retry_id = row.id if row is not None else None  # status 'scheduled': a transient failure to retry
        reason, recipient = _hold_reason(step, facts, sending, reminders, holds)
        if reason:
            return Decision(Next(step, "held", step.slot, recipient, reason, retry_id), tuple(skipped))
        earliest = step.slot
        if previous_sent is not None:
            # never in the same slot as the previous step of this invoice
            earliest = max(earliest, floor_to_slot(previous_sent, cal) + timedelta(minutes=cal.slot_minutes))
        if earliest <= now and is_open(now, step.kind, cal):
            return Decision(Next(step, "due", earliest, recipient, None, retry_id), tuple(skipped))
        when = first_open_slot(max(earliest, now), step.kind, cal)
        return Decision(Next(step, "scheduled", when, recipient, None, retry_id), tuple(skipped))
    return Decision(None, tuple(skipped))
