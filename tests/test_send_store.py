"""The sender's store logic on SQLite and PostgreSQL: concurrent passes in threads, dead passes, holds."""

from __future__ import annotations

import os
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.config import Administration, Config, SenderConfig
from gateway.holds import set_hold
from gateway.sender import Sender, process_token
from gateway.store import transaction
from gateway.tables import administrations, debtors, deliveries, invoices, sender_passes
from gateway.transports import OutboxTransport

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)  # 16:30 in Amsterdam


def seed(engine: Engine, count: int) -> None:
    loaded = datetime(2026, 3, 4, 14, 1, tzinfo=UTC)
    with transaction(engine) as conn:
        conn.execute(administrations.insert().values(id=1, code="ACME", name="Acme", created_at=loaded))
        conn.execute(
            debtors.insert(),
            [
                {"id": i, "administration_id": 1, "code": f"D{i}", "company_name": f"D{i}", "is_company": True,
                 "email": f"d{i}@example.org", "created_run_id": 0, "updated_run_id": 0}
                for i in range(1, count + 1)
            ],
        )  # fmt: skip
        conn.execute(
            invoices.insert(),
            [
                {"id": i, "administration_id": 1, "debtor_id": i, "number": f"INV{i}",
                 "invoice_date": date(2026, 3, 4), "due_date": date(2026, 4, 3), "amount_total_cents": 1000,
                 "currency": "EUR", "amount_open_cents": 1000, "kind": "invoice", "send": True, "status": "open",
                 "loaded_at": loaded, "created_run_id": 0, "updated_run_id": 0}
                for i in range(1, count + 1)
            ],
        )  # fmt: skip


def sender(engine: Engine, folder: Path, batch: int = 7) -> Sender:
    config = Config(
        data_dir=folder,
        database_url="",
        sender=SenderConfig(batch_size=batch),
        administrations={"ACME": Administration(code="ACME", name="Acme")},
    )
    return Sender(config, engine, lambda: OutboxTransport(folder / "outbox"), lambda: NOW)


def test_passes_in_threads_at_the_same_instant_send_each_step_once(engine: Engine, tmp_path: Path) -> None:
    seed(engine, 60)
    barrier = threading.Barrier(3)
    reports = []

    def one() -> None:
        s = sender(engine, tmp_path)
        barrier.wait()
        reports.append(s.run_pass())

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(r.sent for r in reports) == 60 and all(r.unknown == 0 for r in reports)
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 60
    with transaction(engine, write=False) as conn:
        rows = conn.execute(sa.select(deliveries.c.invoice_id, deliveries.c.status)).all()
    assert sorted(r.invoice_id for r in rows) == list(range(1, 61)) and {r.status for r in rows} == {"sent"}


def test_claims_of_dead_passes(engine: Engine, tmp_path: Path) -> None:
    seed(engine, 4)
    wall = datetime.now(UTC)
    dead_pid = os.fork()
    if dead_pid == 0:  # a process that exits at once: its pid is dead
        os._exit(0)
    os.waitpid(dead_pid, 0)
    with transaction(engine) as conn:
        passes = [
            # (host, pid, process token, heartbeat): dead by pid; same pid, other process (a restart in a
            # container); another host with an old heartbeat; another host, alive.
            ("this", dead_pid, "x", wall),
            ("this", os.getpid(), "other-process", wall),
            ("elsewhere", 1, "y", wall - timedelta(hours=1)),
            ("elsewhere", 1, "z", wall),
        ]
        for i, (host, pid, token, beat) in enumerate(passes, start=1):
            pass_id = conn.execute(
                sender_passes.insert().values(host=host, pid=pid, process=token, now=NOW, started_at=beat,
                                              heartbeat_at=beat)
            ).inserted_primary_key[0]  # fmt: skip
            conn.execute(
                deliveries.insert().values(administration_id=1, invoice_id=i, kind="invoice", sequence=1,
                                           status="sending", scheduled_for=NOW, pass_id=pass_id, updated_at=NOW)
            )  # fmt: skip
    s = sender(engine, tmp_path)
    s.host = "this"
    assert process_token() != "other-process"
    report = s.run_pass()
    assert report.recovered_unknown == 3 and report.sent == 0
    with transaction(engine, write=False) as conn:
        status = dict(conn.execute(sa.select(deliveries.c.invoice_id, deliveries.c.status)).all())
    assert status == {1: "unknown", 2: "unknown", 3: "unknown", 4: "sending"}


def test_a_pause_committed_before_the_claim_wins(engine: Engine, tmp_path: Path) -> None:
    seed(engine, 3)
    with transaction(engine) as conn:
        set_hold(conn, 1, "invoice", 2, "pause", NOW)
        set_hold(conn, 1, "debtor", 3, "pause_reminders", NOW)  # the invoice itself still goes
    report = sender(engine, tmp_path).run_pass()
    assert report.sent == 2
    with transaction(engine, write=False) as conn:
        sent = {r for (r,) in conn.execute(sa.select(deliveries.c.invoice_id))}
    assert sent == {1, 3}
