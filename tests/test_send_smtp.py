"""The SMTP transport against a real SMTP server (aiosmtpd) on loopback: retries, bounces, TLS, login."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.smtp_server import Behaviour, Recorder, free_port, start

HEADER = (
    "debtor_code;debtor_company_name;debtor_email;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)


def snapshot(path: Path, rows: dict[str, str]) -> Path:
    """rows: invoice number -> e-mail address (one debtor per invoice, named after it)."""
    body = "".join(
        f"D-{n};Debtor {n};{mail};Straat 1;1234 AB;Utrecht;{n};2026-03-01;2026-03-31;100.00;100.00\n"
        for n, mail in rows.items()
    )
    path.write_text(HEADER + body, "utf-8")
    return path


def write_config(folder: Path, port: int, extra: str = "", starttls: bool = False) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        f"""
[gateway]
data_dir = "."
[sender]
transport = "smtp"
from_address = "facturen@acme.example"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_starttls = {str(starttls).lower()}
timeout_seconds = 5
retry_initial_seconds = 0.05
retry_attempts = 3
{extra}
[administrations.ACME]
name = "Acme B.V."
""",
        "utf-8",
    )
    return path


class Cli:
    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]):
        self.config, self.capsys = config, capsys

    def __call__(self, now: str, *args: str, code: int = 0) -> Any:
        self.capsys.readouterr()
        got = main(["--config", str(self.config), "--json", "--now", now, *args])
        out = self.capsys.readouterr()
        assert got == code, out.err
        return json.loads(out.out) if out.out.strip() else None


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder(
        Behaviour(
            defer_rcpt_once={"rcpt-later@example.org"},
            defer_data_once={"data-later@example.org"},
            reject={"gone@example.org"},
        )
    )
    controller = start(handler)
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def test_transient_failures_are_retried_and_a_5xx_bounces(
    recorder: tuple[Recorder, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler, port = recorder
    cli = Cli(write_config(tmp_path, port), capsys)
    mails = {
        "INV1": "ok@example.org",
        "INV2": "rcpt-later@example.org",
        "INV3": "data-later@example.org",
        "INV4": "gone@example.org",
    }
    assert cli("2026-03-04T15:01", "ingest", str(snapshot(tmp_path / "a.csv", mails)), "--administration", "ACME")
    report = cli("2026-03-04T16:30", "send-due")
    assert (report["sent"], report["bounced"], report["deferred"], report["unknown"]) == (3, 1, 0, 0)
    accepted = sorted(rcpt for rcpt, _ in handler.accepted)
    assert accepted == ["data-later@example.org", "ok@example.org", "rcpt-later@example.org"], "each exactly once"
    assert (
        handler.rcpt_seen.count("rcpt-later@example.org") == 2
        and handler.data_seen.count("data-later@example.org") == 2
    )
    assert handler.connections == 1, "one connection for the whole batch (RSET after a refusal)"
    msg = email.message_from_bytes(dict(handler.accepted)["ok@example.org"], policy=email.policy.default)
    assert str(msg["Subject"]) == "Factuur INV1 van Acme B.V." and str(msg["Message-ID"]).startswith("<invoice.1.")

    rows = {r["invoice"]: r for r in cli("2026-03-04T16:31", "outbox") if r["id"] is not None}
    assert (
        rows["INV4"]["status"] == "failed"
        and rows["INV4"]["reason"] == "bounced: recipient refused: 550 5.1.1 no such user"
    )
    assert rows["INV2"]["status"] == "sent" and rows["INV2"]["attempts"] == 2
    assert cli("2026-03-04T17:00", "send-due")["sent"] == 0, "nothing twice"

    # The bounced address blocks the reminder, until an import delivers another address.
    held = {i["number"]: i for i in cli("2026-04-07T09:00", "invoices")}
    assert held["INV4"]["blocked"] == "bounced address gone@example.org"
    assert cli("2026-04-07T09:00", "send-due")["sent"] == 3  # the reminders of the other three
    assert "gone@example.org" not in [r for r, _ in handler.accepted]
    mails["INV4"] = "new@example.org"
    cli("2026-04-07T09:10", "ingest", str(snapshot(tmp_path / "b.csv", mails)), "--administration", "ACME")
    assert cli("2026-04-07T09:30", "send-due")["sent"] == 1
    assert handler.accepted[-1][0] == "new@example.org"


def test_server_away_defers_then_sends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    cli = Cli(write_config(tmp_path, port), capsys)
    mails = {f"INV{i}": f"d{i}@example.org" for i in range(3)}
    cli("2026-03-04T15:01", "ingest", str(snapshot(tmp_path / "a.csv", mails)), "--administration", "ACME")
    report = cli("2026-03-04T16:30", "send-due")
    assert (report["sent"], report["deferred"], report["released"]) == (0, 1, 2)
    rows = cli("2026-03-04T16:31", "outbox")
    deferred = [r for r in rows if r["id"] is not None]
    assert len(deferred) == 1 and deferred[0]["status"] == "scheduled" and deferred[0]["attempts"] == 3
    assert "cannot connect" in deferred[0]["reason"]
    handler = Recorder()
    controller = start(handler, port=port)  # the server comes back
    try:
        assert cli("2026-03-04T17:00", "send-due")["sent"] == 3
    finally:
        controller.stop()
    assert sorted(r for r, _ in handler.accepted) == sorted(mails.values())


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def test_starttls_and_login_from_a_credential(
    certificate: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    key, cert = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    handler = Recorder()
    controller = start(handler, tls=tls, auth=("gateway", "s3cret"))
    try:
        extra = f'smtp_username = "gateway"\nsmtp_ca_file = "{cert}"'
        cli = Cli(write_config(tmp_path, controller.port, extra, starttls=True), capsys)
        monkeypatch.delenv("PAYT_GATEWAY_SMTP_PASSWORD", raising=False)
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        cli("2026-03-04T15:01", "check-config", code=78)  # the credential is missing
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "SMTP_PASSWORD").write_text("s3cret\n", "utf-8")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        mails = {"INV1": "tls@example.org"}
        cli("2026-03-04T15:01", "ingest", str(snapshot(tmp_path / "a.csv", mails)), "--administration", "ACME")
        assert cli("2026-03-04T16:30", "send-due")["sent"] == 1
        assert [r for r, _ in handler.accepted] == ["tls@example.org"]
        # A wrong password is refused by the server: deferred, never lost, never sent.
        (credentials / "SMTP_PASSWORD").write_text("wrong", "utf-8")
        mails["INV2"] = "second@example.org"
        cli("2026-03-04T15:05", "ingest", str(snapshot(tmp_path / "b.csv", mails)), "--administration", "ACME")
        report = cli("2026-03-04T16:30", "send-due")
        assert report["sent"] == 0 and report["deferred"] == 1
    finally:
        controller.stop()
