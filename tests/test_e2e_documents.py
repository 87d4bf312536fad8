"""End to end: PDFs and UBL documents dropped into the running daemon's inbox, before and after their invoices."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_documents import CREDIT_NOTE_UBL, DATA, INVOICE_UBL
from tests.test_e2e_daemon import VALID, Daemon, cli_json, drop_by_rename, processed, write_config
from tests.test_pdf import make_pdf

pytestmark = pytest.mark.e2e


def test_documents_through_the_daemon(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with config.open("a", encoding="utf-8") as f:
        f.write("\n[administrations.ACME.documents]\nrequired = true\n")
    d = Daemon(config)
    try:
        d.wait_for(lambda: d.events("inbox_watch_started"))
        inbox = tmp_path / "inbox" / "ACME"

        # Documents first: kept, unlinked.
        drop_by_rename(inbox, "Factuur 2026-0042.pdf", make_pdf())
        drop_by_rename(inbox, "cn-2026-0044.xml", CREDIT_NOTE_UBL)
        for name in ("Factuur 2026-0042.pdf", "cn-2026-0044.xml"):
            assert d.wait_for(processed(d, name))[0]["outcome"] == "performed"

        # Hostile and invalid documents are rejected; the daemon keeps going.
        evil = b'<?xml version="1.0"?>\n<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        evil += b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>&x;</ID></Invoice>'
        drop_by_rename(inbox, "evil.xml", evil)
        drop_by_rename(inbox, "2026-0043.pdf", b"<html>500 Internal Server Error</html>")
        drop_by_rename(inbox, "invalid.xml", (DATA / "invalid-invoice-2026-0045.xml").read_bytes())
        for name in ("evil.xml", "2026-0043.pdf", "invalid.xml"):
            assert d.wait_for(processed(d, name))[0]["outcome"] == "rejected", name

        # The open items: 2026-0042 gets its waiting PDF; 2026-0043 has none.
        drop_by_rename(inbox, "open-items.csv", VALID)
        assert d.wait_for(processed(d, "open-items.csv"))[0]["outcome"] == "performed"
        [pdf] = [doc for doc in cli_json(config, "documents") if doc["kind"] == "pdf"]
        assert (pdf["invoice"], pdf["current"]) == ("2026-0042", True)
        [waiting] = cli_json(config, "documents", "--unlinked")
        assert (waiting["kind"], waiting["number"]) == ("ubl", "2026-0044")

        # A UBL after its invoice is linked at once.
        drop_by_rename(inbox, "2026-0043.xml", INVOICE_UBL.replace(b">2026-0042</cbc:ID>", b">2026-0043</cbc:ID>"))
        assert d.wait_for(processed(d, "2026-0043.xml"))[0]["outcome"] == "performed"
        invoices = {i["number"]: i for i in cli_json(config, "invoices")}
        # (The daemon runs at the real time, when these invoices are long too old to send: ``blocked`` says
        # so. What matters here is that neither is held for a missing document.)
        assert {n: (i["documents"], i["blocked"] == "document missing") for n, i in invoices.items()} == {
            "2026-0042": (["pdf"], False),
            "2026-0043": (["ubl"], False),
        }

        runs = {r["file"]: r for r in cli_json(config, "imports")}
        for name in ("Factuur 2026-0042.pdf", "cn-2026-0044.xml"):
            assert [n["code"] for n in runs[name]["notices"]] == ["document_unlinked"]
        assert [n["code"] for n in runs["open-items.csv"]["notices"]] == ["documents_linked"]
        assert [e["code"] for e in runs["evil.xml"]["errors"]] == ["xml_doctype_forbidden"]
        assert [e["code"] for e in runs["2026-0043.pdf"]["errors"]] == ["not_a_pdf"]
        assert [(e["row"], e["column"]) for e in runs["invalid.xml"]["errors"]] == [
            (9, "cbc:IssueDate"),
            (57, "cbc:Street"),
            (108, "cbc:PayableAmount"),
            (108, "cbc:PayableAmount"),
        ]
        for run in runs.values():
            assert (tmp_path / run["archived_path"]).is_file(), run
        assert not any(inbox.iterdir())
    finally:
        assert d.stop() == 0
