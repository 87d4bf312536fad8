"""Several real gateways on one data folder and one database: configurations, processes, a workload, checks.

Used by the multi-instance, crash and fault tests and by the benchmarks in ``benchmarks/`` (which import it
from the repository). Everything is a real ``payt-gateway`` process; the database is this machine's
PostgreSQL (a fresh schema) or a SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.polling import poll_until

PG_URL = os.environ.get("PAYT_GATEWAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent

HEADER = (
    "debtor_code;debtor_company_name;debtor_email;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)
INVOICE_DATE = "2026-02-25"
DUE_DATE = "2026-03-10"
IMPORT_AT = "2026-03-03T10:00:00+01:00"  # a Tuesday morning in Amsterdam
INVOICES_DUE_AT = "2026-03-03T12:00:00+01:00"  # the invoices' slot (11:00) has passed: all due
REMINDERS_DUE_AT = "2026-03-17T09:00:00+01:00"  # 7 days after the due date: the first reminders are due


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema on the machine's PostgreSQL, as a database URL; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def codes(count: int) -> list[str]:
    return [f"A{i:02d}" for i in range(count)]


def write_config(
    folder: Path,
    data_dir: Path,
    database_url: str,
    administrations: Sequence[str],
    *,
    sftp: bool = False,
    settle: float = 0.3,
    sweep: float = 2.0,
    extra: str = "",
) -> Path:
    """One instance's configuration: the shared ``data_dir`` and database, its own SFTP port (0: any)."""
    folder.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    body = f"""
[gateway]
data_dir = {json.dumps(str(data_dir))}
database_url = {json.dumps(database_url)}
settle_seconds = {settle}
sweep_seconds = {sweep}

[sftp]
enabled = {"true" if sftp else "false"}
bind = "127.0.0.1"
port = 0
failure_delay = 0.05
host_key = "ssh_host_ed25519_key"
"""
    for code in administrations:
        body += f'\n[administrations.{code}]\nname = "{code} B.V."\nimport_mode = "on_delivery"\n'
    path = folder / "gateway.toml"
    path.write_text(body + extra, "utf-8")
    return path


def open_items(code: str, count: int, start: int = 0) -> bytes:
    """``count`` open invoices of administration ``code``, each with a debtor that has an e-mail address."""
    rows = "".join(
        f"{code}D{i:05d};Debiteur {code} {i};klant{i}@{code.lower()}.example.nl;Straat {i % 90 + 1};1234 AB;"
        f"Utrecht;{code}-{i:05d};{INVOICE_DATE};{DUE_DATE};{i % 900 + 10}.50;{i % 900 + 10}.50\n"
        for i in range(start, start + count)
    )
    return (HEADER + rows).encode("utf-8")


def make_pdf(text: str) -> bytes:
    """A small, structurally complete PDF (the same shape as tests.test_pdf's)."""
    body = (
        "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        "2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        f"3 0 obj\n<< /Length {len(text)} >>\nstream\n{text}\nendstream\nendobj\n"
    ).encode("latin-1")
    trailer = f"xref\n0 4\n0000000000 65535 f \ntrailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n{len(body)}\n%%EOF\n"
    return body + trailer.encode("ascii")


@dataclass(frozen=True)
class Drop:
    administration: str
    name: str
    data: bytes


def workload(administrations: Sequence[str], invoices_each: int, pdfs_each: int, copies: int = 0) -> list[Drop]:
    """Per administration one open-items file and ``pdfs_each`` invoice PDFs (additive: the end state does
    not depend on the order in which instances take them); ``copies`` PDFs delivered a second time under
    another name (the same content: exactly one of the two is imported, the other is a duplicate)."""
    drops: list[Drop] = []
    for code in administrations:
        drops.append(Drop(code, f"open-items-{code}.csv", open_items(code, invoices_each)))
        for i in range(pdfs_each):
            drops.append(Drop(code, f"{code}-{i:05d}.pdf", make_pdf(f"Factuur {code}-{i:05d}")))
    pdfs = [d for d in drops if d.name.endswith(".pdf")]
    for original in pdfs[:copies]:
        drops.append(Drop(original.administration, "kopie " + original.name, original.data))
    return drops


def drop(data_dir: Path, item: Drop) -> None:
    """Written under a temporary name, then renamed into the inbox (how an SFTP upload lands)."""
    inbox = data_dir / "inbox" / item.administration
    inbox.mkdir(parents=True, exist_ok=True)
    temp = inbox / f".{item.name}.part"
    temp.write_bytes(item.data)
    os.rename(temp, inbox / item.name)


class Instance:
    """``payt-gateway run`` as a subprocess; its JSON log lines go to a file (long runs stay small)."""

    def __init__(self, config: Path, name: str, now: str | None = None, env: dict[str, str] | None = None):
        self.config = config
        self.name = name
        self.log_path = config.parent / f"{name}.log"
        args = [sys.executable, "-m", "gateway", "--config", str(config)]
        if now is not None:
            args += ["--now", now]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [*args, "run"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            # A hung instance can be asked for every thread's stack (SIGABRT, see ``wait``).
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
        )
        self._offset = 0
        self._events: list[dict[str, Any]] = []

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        with open(self.log_path, "rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                self._events.append(record)
        return [e for e in self._events if name is None or e.get("event") == name]

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
        return poll_until(
            predicate, timeout, lambda: f"{self.name}: timed out; output:\n{self.output()[-5000:]}", alive=self._alive
        )

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} died (exit {self.proc.returncode}):\n{self.output()[-5000:]}")

    def started(self, timeout: float = 60.0) -> Instance:
        self.wait_for(lambda: self.events("gateway_started"), timeout)
        return self

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        """The exit status; an instance that does not exit in time is aborted and its output, with every
        thread's stack (faulthandler), is in the error."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s; aborted. Output:\n{self.output()[-12000:]}"
            ) from None
        finally:
            self._log.close()
        return code


def cli(config: Path, *args: str, now: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    head = [sys.executable, "-m", "gateway", "--config", str(config)] + (["--now", now] if now else [])
    return subprocess.run([*head, *args], capture_output=True, text=True, timeout=timeout, check=False)


def cli_json(config: Path, *args: str, now: str | None = None) -> Any:
    done = cli(config, "--json", *args, now=now)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def runs_by_content(database_url: str) -> dict[str, Counter[str]]:
    """Per SHA-256 the statuses of its runs."""
    out: dict[str, Counter[str]] = {}
    for sha, status in query(database_url, "SELECT sha256, status FROM import_runs WHERE sha256 IS NOT NULL"):
        out.setdefault(sha, Counter())[status] += 1
    return out


def check_imported_once(database_url: str, data_dir: Path, drops: Sequence[Drop]) -> None:
    """Every content performed exactly once; every delivered file archived exactly once; nothing left behind."""
    import hashlib

    by_content = runs_by_content(database_url)
    deliveries = Counter(hashlib.sha256(d.data).hexdigest() for d in drops)
    for sha, delivered in deliveries.items():
        statuses = by_content.get(sha, Counter())
        assert statuses["performed"] == 1, f"{sha}: runs {dict(statuses)}"
        assert statuses["duplicate"] == delivered - 1, f"{sha}: delivered {delivered}x, runs {dict(statuses)}"
    archived = [p for p in files_under(data_dir / "archive") if not p.name.endswith((".errors.json", ".errors.txt"))]
    archived_contents = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in archived)
    assert archived_contents == deliveries, "each delivered file is archived exactly once"
    assert files_under(data_dir / "claimed") == [], "nothing is left claimed"
    assert [p for p in files_under(data_dir / "inbox") if not p.name.startswith(".")] == []


def check_sent_once(database_url: str, expected: int, kind: str) -> None:
    rows = query(
        database_url,
        f"SELECT invoice_id, sequence, status, count(*) FROM deliveries WHERE kind = '{kind}' "
        "GROUP BY invoice_id, sequence, status",
    )
    assert all(r[3] == 1 for r in rows)
    statuses = Counter(r[2] for r in rows)
    assert statuses == Counter({"sent": expected}), statuses


def smtp_section(port: int, timeout: int = 20) -> str:
    """The [sender] table for an SMTP server on loopback (tests.smtp_server), without TLS."""
    return f"""
[sender]
transport = "smtp"
from_address = "facturen@gateway.example"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_starttls = false
timeout_seconds = {timeout}
retry_initial_seconds = 0.05
retry_attempts = 3
"""


def received_message_ids(accepted: Sequence[tuple[str, bytes]]) -> Counter[str]:
    """The Message-ID of every message an SMTP recorder accepted (one sent twice counts twice)."""
    from email import message_from_bytes

    return Counter(str(message_from_bytes(content)["Message-ID"]) for _rcpt, content in accepted)


def outbox_messages(data_dir: Path) -> Counter[str]:
    """Message-ID of every .eml the outbox transport wrote (a message sent twice appears twice)."""
    ids: Counter[str] = Counter()
    for path in (data_dir / "outbox").glob("*.eml"):
        with open(path, "rb") as f:
            for line in f:
                if line.lower().startswith(b"message-id:"):
                    ids[line.split(b":", 1)[1].strip().decode()] += 1
                    break
    return ids
