"""Crash injection: ``payt-gateway run`` killed with SIGKILL at random moments while files arrive and sends are
due, restarted each time; the end state compared with a crash-free run of the same work.

The work (``Plan``): invoices imported beforehand (``ingest`` at IMPORT_AT) whose invoice messages are due at
the daemon's time (``--now INVOICES_DUE_AT``: every start begins there), plus a
stream of files dropped into the inbox while the daemon is killed and restarted: open items of further
administrations, invoice PDFs, and some files delivered twice. The messages go over SMTP to a recorder in this
process, which sees a message that went out twice.

At the end, what an operator does after crashes: every ``unknown`` delivery (a kill while the message was being
handed over) is resolved from what the SMTP server really received (``outbox resolve ID --sent`` if it arrived,
``--retry`` if not), and one more pass sends the retried ones. Then:
- the business tables (debtors, invoices, payments, documents, deliveries; natural keys, no surrogate ids or
  run numbers) equal the crash-free run's;
- every file was performed exactly once (duplicates as duplicates) and archived exactly once, nothing is left
  claimed or in the inbox;
- the SMTP server received every message exactly once, the same set as in the crash-free run.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.fleet import (
    IMPORT_AT,
    INVOICES_DUE_AT,
    Drop,
    Instance,
    check_imported_once,
    cli,
    cli_json,
    drop,
    files_under,
    make_pdf,
    open_items,
    query,
    received_message_ids,
    smtp_section,
    workload,
    write_config,
)
from tests.smtp_server import Recorder, start

PRELOADED = "PRE"
DROPPED = ["B00", "B01", "B02", "B03"]
STATE_QUERIES = {
    "debtors": "SELECT a.code AS adm, d.* FROM debtors d JOIN administrations a ON a.id = d.administration_id",
    "invoices": "SELECT a.code AS adm, db.code AS debtor, i.* FROM invoices i "
    "JOIN administrations a ON a.id = i.administration_id JOIN debtors db ON db.id = i.debtor_id",
    "payments": "SELECT i.number AS inv, p.* FROM payments p JOIN invoices i ON i.id = p.invoice_id",
    "documents": "SELECT a.code AS adm, i.number AS inv, d.* FROM documents d "
    "JOIN administrations a ON a.id = d.administration_id LEFT JOIN invoices i ON i.id = d.invoice_id",
    "deliveries": "SELECT i.number AS inv, dl.* FROM deliveries dl JOIN invoices i ON i.id = dl.invoice_id",
}
# Surrogate keys, what records how a row got there (which run, which pass, how many attempts), and when the
# daemon happened to get to it (``run --now`` starts the clock there and lets it run on): not state.
NOT_STATE = {"archived_path", "attempts", "reason", "file_name"}
WHEN = {"loaded_at", "received_at", "linked_at", "created_at", "first_seen_at", "claimed_at", "updated_at"}
NOT_STATE_OF = {"deliveries": {"sent_at"}}  # (an invoice's sent_at comes from the file: state)


class SlowRecorder(Recorder):
    """Takes ``delay`` seconds over each message, so that the sending spans several kills."""

    delay = 0.01

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Plan:
    preloaded_invoices: int = 400
    invoices_each: int = 60
    pdfs_each: int = 15
    copies: int = 5

    def drops(self) -> list[Drop]:
        items = workload(DROPPED, self.invoices_each, self.pdfs_each, copies=self.copies)
        items += [Drop(PRELOADED, f"{PRELOADED}-{i:05d}.pdf", make_pdf(f"pre {i}")) for i in range(10)]
        random.Random(7).shuffle(items)
        return items


@dataclass
class Outcome:
    kills: int = 0
    kill_moments: list[float] = field(default_factory=list)
    unknown_resolved_sent: int = 0
    unknown_resolved_retry: int = 0
    messages: int = 0
    files: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "kill_moments"} | {
            "kill_after_s": {"min": min(self.kill_moments, default=0), "max": max(self.kill_moments, default=0)}
        }


def message_ids(recorder: Recorder) -> Counter[str]:
    with recorder.lock:
        return received_message_ids(list(recorder.accepted))


def prepare(root: Path, database_url: str, plan: Plan, smtp_port: int) -> tuple[Path, Path, Drop]:
    """The configuration, the data folder, and the invoices imported beforehand (their messages are due)."""
    data = root / "data"
    data.mkdir(parents=True)
    assert database_url.startswith("postgresql") or database_url.startswith("sqlite:////"), "an absolute URL"
    config = write_config(
        root, data, database_url, [PRELOADED, *DROPPED], settle=0.2, sweep=1.0, extra=smtp_section(smtp_port)
    )
    preloaded = Drop(PRELOADED, "preloaded.csv", open_items(PRELOADED, plan.preloaded_invoices))
    source = root / preloaded.name
    source.write_bytes(preloaded.data)
    done = cli(config, "--json", "ingest", str(source), "--administration", PRELOADED, now=IMPORT_AT)
    assert done.returncode == 0, done.stderr
    return config, data, preloaded


def finished(database_url: str, data: Path, expected_runs: int) -> bool:
    runs = query(database_url, "SELECT count(*) FROM import_runs WHERE status NOT IN ('in_progress', 'failed')")
    return bool(runs[0][0] >= expected_runs) and not files_under(data / "claimed")


def run_to_the_end(config: Path, data: Path, database_url: str, expected_runs: int, name: str) -> None:
    """A daemon that is left alone until every file is processed and the slot's pass completed."""
    gateway = Instance(config, name, now=INVOICES_DUE_AT)
    try:
        gateway.started()  # (a SIGTERM before the handlers are installed would kill it)
        gateway.wait_for(lambda: finished(database_url, data, expected_runs), timeout=600)
        slot = "SELECT count(*) FROM job_slots"
        gateway.wait_for(lambda: query(database_url, slot)[0][0] > 0, timeout=600)
    finally:
        code = gateway.stop()
    assert code == 0, gateway.output()[-3000:]


def feed(data: Path, drops: list[Drop], seconds: float, stop: threading.Event) -> None:
    """Drop the files spread over ``seconds`` (while the daemon is killed and restarted)."""
    pause = seconds / max(len(drops), 1)
    for item in drops:
        if stop.is_set():
            return
        drop(data, item)
        time.sleep(pause)


def sqlite_url(root: Path) -> str:
    return f"sqlite:///{root / 'data' / 'gateway.db'}"


def crash_free(root: Path, database_url: str, plan: Plan) -> tuple[dict[str, list[str]], Counter[str]]:
    recorder = SlowRecorder()
    smtp = start(recorder)
    try:
        config, data, preloaded = prepare(root, database_url, plan, smtp.port)
        drops = plan.drops()
        for item in drops:
            drop(data, item)
        run_to_the_end(config, data, database_url, len(drops) + 1, "reference")
        check_imported_once(database_url, data, [*drops, preloaded])
        return state(database_url), message_ids(recorder)
    finally:
        smtp.stop()


def with_kills(root: Path, database_url: str, plan: Plan, kills: int, seed: int = 1) -> tuple[Outcome, Any]:
    """Kill the daemon ``kills`` times, at a random moment between 0.2 s and 4 s after each start."""
    rng = random.Random(seed)
    recorder = SlowRecorder()
    smtp = start(recorder)
    outcome = Outcome()
    began = time.monotonic()
    try:
        config, data, preloaded = prepare(root, database_url, plan, smtp.port)
        drops = plan.drops()
        stop = threading.Event()
        feeder = threading.Thread(target=feed, args=(data, drops, kills * 2.0, stop), daemon=True)
        feeder.start()
        for k in range(kills):
            gateway = Instance(config, f"killed{k}", now=INVOICES_DUE_AT)
            moment = rng.uniform(0.2, 4.0)
            time.sleep(moment)
            if gateway.proc.poll() is not None:
                raise AssertionError(f"the daemon died by itself:\n{gateway.output()[-3000:]}")
            gateway.kill()
            outcome.kills += 1
            outcome.kill_moments.append(moment)
            twice = [m for m, n in message_ids(recorder).items() if n > 1]
            assert not twice, f"sent twice after kill {k}: {twice}"
        feeder.join()
        stop.set()
        run_to_the_end(config, data, database_url, len(drops) + 1, "final")
        resolve_unknown(config, database_url, recorder, outcome)
        check_imported_once(database_url, data, [*drops, preloaded])
        ids = message_ids(recorder)
        assert set(ids.values()) <= {1}, "no message was received twice"
        outcome.messages = sum(ids.values())
        outcome.files = len(drops)
        outcome.seconds = round(time.monotonic() - began, 1)
        return outcome, (state(database_url), ids)
    finally:
        smtp.stop()


def resolve_unknown(config: Path, database_url: str, recorder: Recorder, outcome: Outcome) -> None:
    """What an operator does: each ``unknown`` message settled by what the SMTP server received; one more pass."""
    received = message_ids(recorder)
    unknown = query(database_url, "SELECT id, message_id FROM deliveries WHERE status = 'unknown'")
    for delivery_id, message_id in unknown:
        went = f"<{message_id}>" in received or message_id in received
        done = cli(config, "outbox", "resolve", str(delivery_id), "--sent" if went else "--retry", now=INVOICES_DUE_AT)
        assert done.returncode == 0, done.stderr
        if went:
            outcome.unknown_resolved_sent += 1
        else:
            outcome.unknown_resolved_retry += 1
    if unknown:
        report = cli_json(config, "send-due", now=INVOICES_DUE_AT)
        assert report["sent"] == outcome.unknown_resolved_retry, report


def state(database_url: str) -> dict[str, list[str]]:
    """The business tables by natural keys, as sorted JSON rows (no surrogate ids, no run or pass numbers)."""
    engine = sa.create_engine(database_url)
    out: dict[str, list[str]] = {}
    try:
        with engine.connect() as conn:
            for table, sql in STATE_QUERIES.items():
                rows = []
                skip = NOT_STATE | WHEN | NOT_STATE_OF.get(table, set())
                for row in conn.exec_driver_sql(sql).mappings():
                    kept = {k: str(v) for k, v in row.items() if k != "id" and not k.endswith("_id") and k not in skip}
                    rows.append(json.dumps(kept, sort_keys=True))
                out[table] = sorted(rows)
    finally:
        engine.dispose()
    return out


def compare(reference: dict[str, list[str]], crashed: dict[str, list[str]]) -> list[str]:
    """The rows that differ, per table (empty when the states are equal)."""
    diffs = []
    for table in STATE_QUERIES:
        ref, got = Counter(reference[table]), Counter(crashed[table])
        if ref != got:
            diffs.append(
                f"{table}: missing {list((ref - got).elements())[:3]}, extra {list((got - ref).elements())[:3]}"
            )
    return diffs
