"""The sender: one pass sends every message that is due now, exactly once (DOMAIN.md §5–7, DESIGN.md rule 3).

A pass
1. registers itself (``sender_passes``) and turns the claims of dead passes that are still ``sending`` into
   ``unknown``: they may or may not have gone out, and only an operator decides (``outbox resolve``);
2. scans each administration's open invoices read-only and decides their next step (``gateway.plan``);
3. for the due ones, in batches: re-reads and re-decides them inside a write transaction (a payment or a
   pause committed since the scan wins) and claims each step by inserting its delivery row as ``claimed``
   (the unique key (invoice, kind, sequence) lets exactly one pass win), then commits;
4. for each claimed message: commits ``sending`` (the point of no return), hands it to the transport, and
   records the outcome right after. A crash leaves at most the one message in hand ``sending``, which the
   next pass turns ``unknown``; the batch's other claims are given back (``claimed`` of a dead pass).

Transient failures are retried with backoff while the window is open, then left ``scheduled`` for the next
pass; a permanent refusal of the recipient marks the address bounced. Claims never handed to the transport
(a stop was requested, the server stayed away) are released, not left ``unknown``.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from gateway.attachments import find_attachments
from gateway.collection import payment_deadline
from gateway.config import Administration, Config
from gateway.interest import interest_kind
from gateway.locks import job_lock
from gateway.messages import (
    MessageBuilder,
    MessageInput,
    final_costs_cents,
    make_message_id,
    make_salutation,
    pick_language,
)
from gateway.sendstate import Decided, administration_id, decide_rows, invoice_query
from gateway.slots import Calendar, is_open, last_boundary, local_day, make_calendar
from gateway.store import driver_datetime, transaction
from gateway.tables import bounces, deliveries, invoices, job_slots, sender_passes
from gateway.transports import Envelope, Outcome, Result, Transport, safe_name

log = structlog.get_logger("gateway.sender")
SCAN_PAGE = 2_000
LEASE = timedelta(minutes=10)  # a pass that has not beaten its heart for this long is dead
MAX_SLEEP = 120.0
SENDER_JOB = "sender"


def real_clock() -> datetime:
    return datetime.now(UTC)


@cache
def process_token() -> str:
    """Identifies this process among those that had its pid (a container restarts with the same pid)."""
    return secrets.token_hex(8)


@dataclass
class PassReport:
    pass_id: int
    now: datetime
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    deferred: int = 0  # transient failures left for the next pass
    released: int = 0  # claims given back without being handed to the transport
    recovered_unknown: int = 0  # claims of dead passes turned unknown at the start
    complete: bool = False  # every administration was done (not cut short by a stop or the transport)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass_id": self.pass_id,
            "now": self.now.isoformat(),
            "sent": self.sent,
            "failed": self.failed,
            "bounced": self.bounced,
            "unknown": self.unknown,
            "deferred": self.deferred,
            "released": self.released,
            "recovered_unknown": self.recovered_unknown,
            "complete": self.complete,
        }


@dataclass
class Claim:
    delivery_id: int
    decided: Decided
    message: MessageInput
    attempts: int = 0


@dataclass
class _AdminRun:
    admin: Administration
    admin_id: int
    cal: Calendar
    pass_id: int


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


class Sender:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        make_transport: Callable[[], Transport],
        clock: Callable[[], datetime],
        stopping: threading.Event | None = None,
        wall_clock: Callable[[], datetime] = real_clock,
    ):
        self.config = config
        self.engine = engine
        self.make_transport = make_transport
        self.clock = clock
        self.stopping = stopping or threading.Event()
        self.wall_clock = wall_clock
        self.host = socket.gethostname()

    # -- the pass ---------------------------------------------------------------------------------------------

    def run_pass(self) -> PassReport:
        transport = self.make_transport()  # a missing credential is a ConfigError before anything happens
        now = self.clock()
        report = PassReport(pass_id=self._start_pass(now), now=now)
        builder = MessageBuilder()
        try:
            report.recovered_unknown = self._sweep_dead_passes(report.pass_id)
            for code in sorted(self.config.administrations):
                if self.stopping.is_set():
                    break
                if not self._administration(self.config.administrations[code], now, builder, transport, report):
                    break
            else:
                report.complete = not self.stopping.is_set()
        finally:
            transport.close()
            self._finish_pass(report)
        log.info("send_pass_finished", **report.as_dict())
        return report

    def run_slot_pass(self, calendars: Sequence[Calendar]) -> PassReport | None:
        """The daemon's pass for the slot that began last: once across instances. It runs under the job lock
        (another instance's pass running now: skip), and not when a pass completed this slot already; a
        pass cut short (a stop, the transport away) does not complete its slot."""
        slot = last_boundary(self.clock(), list(calendars))
        with job_lock(self.engine, SENDER_JOB) as mine:
            if not mine:
                log.info("send_pass_skipped", slot=slot.isoformat(), reason="another instance is running the pass")
                return None
            with transaction(self.engine, write=False) as conn:
                done = conn.execute(
                    sa.select(job_slots.c.host).where(job_slots.c.job == SENDER_JOB, job_slots.c.slot == slot)
                ).first()
            if done is not None:
                log.info("send_pass_skipped", slot=slot.isoformat(), reason=f"this slot's pass ran on {done.host}")
                return None
            report = self.run_pass()
            if report.complete:
                with transaction(self.engine) as conn:
                    conn.execute(
                        _insert(conn)(job_slots)
                        .values(job=SENDER_JOB, slot=slot, completed_at=self.wall_clock(), host=self.host)
                        .on_conflict_do_nothing()
                    )
            return report

    def _start_pass(self, now: datetime) -> int:
        wall = self.wall_clock()
        with transaction(self.engine) as conn:
            result = conn.execute(
                sender_passes.insert().values(
                    host=self.host,
                    pid=os.getpid(),
                    process=process_token(),
                    now=now,
                    started_at=wall,
                    heartbeat_at=wall,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _heartbeat(self, conn: Connection, pass_id: int) -> None:
        conn.execute(sender_passes.update().where(sender_passes.c.id == pass_id).values(heartbeat_at=self.wall_clock()))

    def _finish_pass(self, report: PassReport) -> None:
        with transaction(self.engine) as conn:
            conn.execute(
                sender_passes.update()
                .where(sender_passes.c.id == report.pass_id)
                .values(finished_at=self.wall_clock(), sent=report.sent, failed=report.failed + report.bounced)
            )

    def _sweep_dead_passes(self, current: int) -> int:
        """Claims of dead passes: ``sending`` becomes ``unknown`` (it may have gone out: never resent by
        itself); ``claimed`` (never handed to the transport) is given back."""
        wall = self.wall_clock()
        p, d = sender_passes, deliveries
        with transaction(self.engine) as conn:
            candidates = conn.execute(
                sa.select(p.c.id, p.c.host, p.c.pid, p.c.process, p.c.heartbeat_at, p.c.finished_at)
                .where(p.c.id != current)
                .where(sa.exists().where(d.c.pass_id == p.c.id, d.c.status.in_(("claimed", "sending"))))
            ).all()
            dead = [r.id for r in candidates if self._is_dead(r, wall)]
            if not dead:
                return 0
            result = conn.execute(
                d.update()
                .where(d.c.status == "sending", d.c.pass_id.in_(dead))
                .values(
                    status="unknown",
                    updated_at=self.clock(),
                    reason="the sender stopped while handing this message over: it may or may not have gone "
                    "out; resolve with `outbox resolve ID --sent|--retry`",
                )
            )
            _give_back(conn, d.c.pass_id.in_(dead), self.clock())
        log.warning("deliveries_unknown", count=result.rowcount, passes=dead)
        return int(result.rowcount)

    def _is_dead(self, row: Any, wall: datetime) -> bool:
        if row.finished_at is not None:
            return True
        if row.host == self.host:
            if row.pid == os.getpid():
                return bool(row.process != process_token())
            try:
                os.kill(row.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return bool(row.heartbeat_at < wall - LEASE)

    # -- one administration ------------------------------------------------------------------------------------

    def _administration(
        self, admin: Administration, now: datetime, builder: MessageBuilder, transport: Transport, report: PassReport
    ) -> bool:
        """Send what is due for ``admin``; False when the pass must stop (stop requested, transport away)."""
        with transaction(self.engine, write=False) as conn:
            admin_id = administration_id(conn, admin.code)
        if admin_id is None:
            return True
        run = _AdminRun(admin, admin_id, make_calendar(admin), report.pass_id)
        due = self._scan(run, now)
        size = self.config.sender.batch_size
        for start in range(0, len(due), size):
            if self.stopping.is_set():
                return False
            claims = self._claim(run, due[start : start + size], now)
            if not self._send(run, claims, builder, transport, report):
                return False
        return True

    def _candidates(self, run: _AdminRun, now: datetime) -> sa.Select[Any]:
        """Open invoices whose next step could be due: an unsent invoice past the wait, a step to retry, or
        reminder time (a cheap filter; the plan decides)."""
        r = run.admin.reminders
        today = local_day(now, run.cal)
        reminder_from = today + timedelta(days=r.pre_reminder_days) if r.pre_reminder_days else None
        if r.count or r.final_reminder:
            after_due = today - timedelta(days=r.first_after_days)
            reminder_from = after_due if reminder_from is None else max(reminder_from, after_due)
        invoice_step = sa.and_(
            invoices.c.loaded_at <= now - run.cal.wait,
            ~sa.exists().where(deliveries.c.invoice_id == invoices.c.id, deliveries.c.kind == "invoice"),
        )
        retry = sa.exists().where(deliveries.c.invoice_id == invoices.c.id, deliveries.c.status == "scheduled")
        ready = sa.or_(invoice_step, retry)
        if reminder_from is not None:
            ready = sa.or_(ready, invoices.c.due_date <= reminder_from)
        return invoice_query().where(
            invoices.c.administration_id == run.admin_id,
            invoices.c.status == "open",
            invoices.c.send.is_(True),
            ready,
        )

    def _scan(self, run: _AdminRun, now: datetime) -> list[int]:
        """The ids of the invoices whose next step is due now (a read-only pass over the candidates)."""
        due: list[int] = []
        after = 0
        query = self._candidates(run, now).order_by(invoices.c.id)
        while True:
            with transaction(self.engine, write=False) as conn:
                rows = conn.execute(query.where(invoices.c.id > after).limit(SCAN_PAGE)).all()
                if not rows:
                    return due
                after = rows[-1].id
                for item in decide_rows(conn, run.admin, run.admin_id, run.cal, rows, now, documents=None):
                    if item.decision.next is not None and item.decision.next.state == "due":
                        due.append(item.row.id)

    def _claim(self, run: _AdminRun, ids: Sequence[int], now: datetime) -> list[Claim]:
        """Re-decide ``ids`` inside one write transaction and claim the steps that are still due."""
        claims: list[Claim] = []
        with transaction(self.engine) as conn:
            query = invoice_query().where(invoices.c.id.in_(list(ids))).order_by(invoices.c.id)
            if conn.dialect.name == "postgresql":
                # FOR UPDATE SKIP LOCKED: an invoice another instance is claiming right now is left to it, and
                # an import closing one of these waits for this claim (or, holding it first, makes us skip it
                # until the next pass: late rather than twice).
                query = query.with_for_update(skip_locked=True, of=invoices)
            rows = conn.execute(query).all()
            documents = find_attachments(conn, self.config.data_dir, [r.id for r in rows])
            decided = decide_rows(conn, run.admin, run.admin_id, run.cal, rows, now, documents=documents)
            fresh: list[dict[str, Any]] = []
            pending: dict[tuple[int, str, int], tuple[Decided, MessageInput]] = {}
            for item in decided:
                nxt = item.decision.next
                if nxt is None or nxt.state != "due" or nxt.recipient is None:
                    continue
                message = self._message(run, item, nxt.step.kind, nxt.step.sequence, nxt.recipient, now, documents)
                values = self._claim_values(run, item, message, nxt.scheduled_for, now)
                if nxt.retry_id is not None:
                    taken = conn.execute(
                        deliveries.update()
                        .where(deliveries.c.id == nxt.retry_id, deliveries.c.status == "scheduled")
                        .values({k: v for k, v in values.items() if k not in ("invoice_id", "kind", "sequence")})
                    ).rowcount
                    if taken:
                        claims.append(Claim(nxt.retry_id, item, message))
                    continue
                fresh.append(values)
                pending[(item.row.id, nxt.step.kind, nxt.step.sequence)] = (item, message)
            if fresh:
                columns = list(fresh[0])
                sql = (
                    f"INSERT INTO deliveries ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                    "ON CONFLICT (invoice_id, kind, sequence) DO NOTHING RETURNING id"
                )
                if conn.dialect.name == "postgresql":
                    sql = sql.replace("?", "%s")
                for values in fresh:
                    params = tuple(driver_datetime(conn, v) if isinstance(v, datetime) else v for v in values.values())
                    delivery_id = conn.exec_driver_sql(sql, params).scalar()
                    if delivery_id is not None:  # None: another pass claimed this step first
                        item, message = pending[(values["invoice_id"], values["kind"], values["sequence"])]
                        claims.append(Claim(int(delivery_id), item, message))
            self._heartbeat(conn, run.pass_id)
        claims.sort(key=lambda c: c.delivery_id)
        return claims

    def _claim_values(
        self, run: _AdminRun, item: Decided, m: MessageInput, scheduled_for: datetime, now: datetime
    ) -> dict[str, Any]:
        return {
            "administration_id": run.admin_id,
            "invoice_id": item.row.id,
            "kind": m.kind,
            "sequence": m.sequence,
            "status": "claimed",
            "scheduled_for": scheduled_for,
            "recipient": m.recipient,
            "message_id": make_message_id(run.admin.code, m.number, m.kind, m.sequence, m.from_address),
            "pass_id": run.pass_id,
            "claimed_at": now,
            "updated_at": now,
            "reason": None,
            "deadline": m.deadline,
            "costs_cents": m.costs_cents,
        }

    def _message(
        self,
        run: _AdminRun,
        item: Decided,
        kind: str,
        sequence: int,
        recipient: str,
        now: datetime,
        documents: dict[int, list[Any]],
    ) -> MessageInput:
        row, admin, sender = item.row, run.admin, self.config.sender
        language = pick_language(row.language_code, row.country_code)
        name = row.company_name or " ".join(p for p in (row.firstname, row.infix, row.lastname) if p)
        sent_on = local_day(now, run.cal)
        deadline = costs = None
        if kind == "final_reminder":
            deadline = payment_deadline(sent_on, run.cal.is_holiday)
            costs = final_costs_cents(row.amount_open_cents)
        return MessageInput(
            administration_code=admin.code,
            administration_name=admin.name,
            from_address=sender.from_address,
            from_name=sender.from_name,
            kind=kind,
            sequence=sequence,
            recipient=recipient,
            recipient_name=name or "",
            language=language,
            salutation=make_salutation(language, row.firstname, row.infix, row.lastname),
            number=row.number,
            invoice_date=row.invoice_date,
            due_date=row.due_date,
            amount_total_cents=row.amount_total_cents,
            amount_open_cents=row.amount_open_cents,
            currency=row.currency,
            sent_at=now.astimezone(run.cal.zone),
            consumer=row.is_company is not True,  # unknown counts as a consumer: the stricter letter
            payment_term_days=admin.reminders.payment_term_days,
            description=row.description,
            payment_reference=row.payment_reference,
            deadline=deadline,
            costs_cents=costs,
            # the final reminder says that statutory interest may be charged, when rates are configured
            interest=interest_kind(row.is_company) if kind == "final_reminder" and self.config.interest_rates else None,
            attachments=tuple(documents.get(row.id, ()) if kind == "invoice" else ()),
        )

    # -- handing messages to the transport ---------------------------------------------------------------------

    def _send(
        self,
        run: _AdminRun,
        claims: list[Claim],
        builder: MessageBuilder,
        transport: Transport,
        report: PassReport,
    ) -> bool:
        """Hand each claim to the transport. One small transaction per message records the previous
        message's outcome and commits this one as ``sending`` (the point of no return) before it is sent."""
        done: tuple[Claim, Result] | None = None
        for index, claim in enumerate(claims):
            if self.stopping.is_set():
                self._record(run, done, report, None)
                self._release(claims[index:], report)
                return False
            m = claim.message
            envelope = Envelope(
                sender=self.config.sender.from_address,
                recipient=m.recipient,
                data=builder.build(m),
                name=f"{claim.delivery_id:09d}_{safe_name(run.admin.code)}_{safe_name(m.number)}_{m.kind}-{m.sequence}",
            )
            self._record(run, done, report, claim)
            result = self._send_with_retries(run, claim, envelope, transport)
            done = (claim, result)
            if result.outcome is Outcome.TRANSIENT:  # the server stays away: give the rest back, stop the pass
                self._record(run, done, report, None)
                self._release(claims[index + 1 :], report)
                log.warning("transport_unavailable", administration=run.admin.code, reason=result.detail)
                return False
        self._record(run, done, report, None)
        return True

    def _send_with_retries(self, run: _AdminRun, claim: Claim, envelope: Envelope, transport: Transport) -> Result:
        s = self.config.sender
        delay = s.retry_initial_seconds
        while True:
            claim.attempts += 1
            result = transport.send(envelope)
            if result.outcome is not Outcome.TRANSIENT or claim.attempts >= s.retry_attempts:
                return result
            if not is_open(self.clock(), claim.message.kind, run.cal):
                return Result(Outcome.TRANSIENT, f"{result.detail} (the window closed)")
            log.info("send_retrying", delivery=claim.delivery_id, reason=result.detail, in_s=delay)
            with transaction(self.engine) as conn:
                self._heartbeat(conn, run.pass_id)
            if self.stopping.wait(min(delay, MAX_SLEEP)):
                return Result(Outcome.TRANSIENT, f"{result.detail} (stopping)")
            delay = delay * 2

    def _record(
        self, run: _AdminRun, done: tuple[Claim, Result] | None, report: PassReport, starting: Claim | None
    ) -> None:
        """In one transaction: the outcome of ``done`` (if any), and ``starting`` committed as ``sending``.

        Driver-level SQL: this runs once per message and SQLAlchemy's statement building would cost more than
        the database (the benchmark's budget, see benchmarks/README.md).
        """
        now = self.clock()
        with transaction(self.engine) as conn:
            if done is not None:
                self._outcome(conn, run, *done, report, now)
            if starting is not None:
                _driver(conn, "UPDATE deliveries SET status = 'sending' WHERE id = ? AND status = 'claimed'",
                        (starting.delivery_id,))  # fmt: skip

    def _outcome(
        self, conn: Connection, run: _AdminRun, claim: Claim, result: Result, report: PassReport, now: datetime
    ) -> None:
        m = claim.message
        sent_at = None
        if result.outcome is Outcome.SENT:
            status, reason, sent_at = "sent", None, now
            report.sent += 1
        elif result.outcome is Outcome.BOUNCED:
            status, reason = "failed", f"bounced: {result.detail}"
            report.bounced += 1
        elif result.outcome is Outcome.FAILED:
            status, reason = "failed", result.detail
            report.failed += 1
        elif result.outcome is Outcome.UNKNOWN:
            status, reason = "unknown", result.detail
            report.unknown += 1
        else:
            status, reason = "scheduled", f"retrying at the next pass: {result.detail}"
            report.deferred += 1
        _driver(
            conn,
            "UPDATE deliveries SET status = ?, reason = ?, sent_at = ?, updated_at = ?, attempts = attempts + ? "
            "WHERE id = ?",
            (status, reason, driver_datetime(conn, sent_at), driver_datetime(conn, now), claim.attempts,
             claim.delivery_id),
        )  # fmt: skip
        if result.outcome is Outcome.BOUNCED:
            conn.execute(
                _insert(conn)(bounces)
                .values(
                    debtor_id=claim.decided.row.debtor_id,
                    address=m.recipient.lower(),
                    delivery_id=claim.delivery_id,
                    reason=result.detail,
                    bounced_at=now,
                )
                .on_conflict_do_nothing(index_elements=["debtor_id", "address"])
            )
        log.info(
            EVENTS[result.outcome],
            administration=run.admin.code,
            invoice=m.number,
            kind=m.kind,
            sequence=m.sequence,
            delivery=claim.delivery_id,
            recipient=m.recipient,
            detail=result.detail,
        )

    def _release(self, claims: Sequence[Claim], report: PassReport) -> None:
        """Give back claims that were never handed to the transport: they go at a later pass."""
        if not claims:
            return
        with transaction(self.engine) as conn:
            _give_back(conn, deliveries.c.id.in_([c.delivery_id for c in claims]), self.clock())
        report.released += len(claims)


EVENTS = {
    Outcome.SENT: "message_sent",
    Outcome.BOUNCED: "message_bounced",
    Outcome.FAILED: "message_failed",
    Outcome.UNKNOWN: "message_unknown",
    Outcome.TRANSIENT: "message_deferred",
}


def _driver(conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
    """One driver-level statement written with ``?`` placeholders, on either database."""
    conn.exec_driver_sql(sql.replace("?", "%s") if conn.dialect.name == "postgresql" else sql, params)


def _give_back(conn: Connection, which: sa.ColumnElement[bool], now: datetime) -> None:
    """``claimed`` rows (never handed over): a first attempt disappears, a retry is ``scheduled`` again."""
    d = deliveries
    conn.execute(d.delete().where(which, d.c.status == "claimed", d.c.attempts == 0))
    conn.execute(d.update().where(which, d.c.status == "claimed").values(status="scheduled", updated_at=now))
