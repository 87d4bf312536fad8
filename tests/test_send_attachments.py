"""Invoice messages carry the invoice's current PDF and UBL documents; reminders carry none."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.cli import main
from tests.test_documents import ubl_for
from tests.test_pdf import make_pdf
from tests.test_send_smtp import snapshot


def run(config: str, now: str, *args: str) -> None:
    assert main(["--config", config, "--now", now, *args]) == 0


def test_the_current_pdf_and_the_ubl_are_attached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\ndata_dir = "."\n[administrations.ACME]\nname = "Acme"\n[administrations.ACME.documents]\n'
        "required = true\n",
        "utf-8",
    )
    config = str(tmp_path / "gateway.toml")
    csv = snapshot(tmp_path / "a.csv", {"INV1": "a@example.org", "INV2": "b@example.org"})
    old, new = tmp_path / "INV1.pdf", tmp_path / "INV1 corrected.pdf"
    old.write_bytes(make_pdf("v1"))
    new.write_bytes(make_pdf("v2"))
    ubl = tmp_path / "INV1.xml"
    ubl.write_bytes(ubl_for("INV1"))
    run(config, "2026-03-04T15:01", "ingest", str(csv), "--administration", "ACME")
    for document in (old, new, ubl):
        run(config, "2026-03-04T15:10", "ingest", str(document), "--administration", "ACME")
    run(config, "2026-03-04T16:30", "send-due")
    (eml,) = (tmp_path / "outbox").glob("*.eml")  # INV2 has no document: held
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    parts = [(p.get_filename(), p.get_content_type(), p.get_content()) for p in msg.iter_attachments()]
    assert parts == [
        ("INV1 corrected.pdf", "application/pdf", new.read_bytes()),
        ("INV1.xml", "application/xml", ubl.read_bytes()),
    ]
    assert "De factuur is als bijlage bij dit bericht gevoegd." in str(msg.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    capsys.readouterr()
    assert main(["--config", config, "--json", "--now", "2026-03-04T16:31", "outbox", "--status", "held"]) == 0
    assert '"reason": "document missing"' in capsys.readouterr().out
