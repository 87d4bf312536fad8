"""PDF and UBL documents through ``ingest`` (the real pipeline), on SQLite and PostgreSQL: stored, linked to
their invoice when it is there or when it arrives, listed, flagged "document missing", rejected when invalid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.archive_files import make_zip
from tests.test_pdf import make_pdf

DATA = Path(__file__).parent / "data" / "ubl"
INVOICE_UBL = (DATA / "invoice-2026-0042.xml").read_bytes()
CREDIT_NOTE_UBL = (DATA / "credit-note-2026-0044.xml").read_bytes()
HEADER = (
    "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;debtor_email;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)
# The invoices are dated 2026-02-28: the commands act at a time when they are still new enough to be sent,
# so that ``blocked`` shows the document rule and not "too old to send" (the sender's rule, DOMAIN.md §5).
NOW = "2026-03-02T10:00:00"


def invoice_rows(*numbers: str) -> bytes:
    debtor = "10045;Voorbeeld B.V.;Kerkstraat 1;1234 AB;Utrecht;facturen@voorbeeld.nl"
    rows = [f"{debtor};{n};2026-02-28;2026-03-30;1210.00;610.00\n" for n in numbers]
    return (HEADER + "".join(rows)).encode("utf-8")


def ubl_for(number: str) -> bytes:
    return INVOICE_UBL.replace(b"<cbc:ID>2026-0042</cbc:ID>", f"<cbc:ID>{number}</cbc:ID>".encode())


class Gateway:
    """The CLI in-process on a real data folder; every call is ``--json``."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]):
        self.root = root
        self.config = root / "gateway.toml"
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> Any:
        self.capsys.readouterr()
        got = main(["--config", str(self.config), "--json", "--now", NOW, *args])
        out = self.capsys.readouterr()
        assert got == code, out.err + out.out
        return json.loads(out.out)

    def ingest(self, name: str, data: bytes, admin: str = "ACME", code: int = 0) -> Any:
        path = self.root / "drop" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return self("ingest", str(path), "--administration", admin, code=code)

    def invoices(self, admin: str = "ACME") -> dict[str, dict[str, Any]]:
        return {i["number"]: i for i in self("invoices", "--administration", admin, "--status", "all")}

    def documents(self, *args: str) -> list[dict[str, Any]]:
        return self("documents", *args)  # type: ignore[no-any-return]

    def text(self, *args: str) -> str:
        self.capsys.readouterr()
        assert main(["--config", str(self.config), "--now", NOW, *args]) == 0
        return self.capsys.readouterr().out


@pytest.fixture
def gw(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Gateway:
    (tmp_path / "gateway.toml").write_text(
        f"""
[gateway]
data_dir = "."
database_url = "{database_url}"

[administrations.ACME]
name = "Acme"
[administrations.ACME.documents]
required = true

[administrations.PAT]
name = "Patterned"
[administrations.PAT.documents]
pattern = '^INV_(?P<number>[0-9-]+)_'
""",
        "utf-8",
    )
    return Gateway(tmp_path, capsys)


def codes(run: dict[str, Any], key: str = "notices") -> list[str]:
    return [p["code"] for p in run[key]]


def test_ubl_for_an_unknown_invoice_is_kept_listed_and_linked_when_the_invoice_arrives(gw: Gateway) -> None:
    run = gw.ingest("2026-0042.xml", INVOICE_UBL)
    assert (run["status"], run["format"], run["detected"]) == (
        "performed",
        "ubl",
        {"document": "ubl", "type": "invoice", "number": "2026-0042"},
    )
    assert run["notices"] == [
        {
            "row": None,
            "column": None,
            "code": "document_unlinked",
            "message": "there is no invoice 2026-0042 yet: the ubl document is kept and linked when the invoice "
            "arrives",
        }
    ]
    assert (gw.root / run["archived_path"]).read_bytes() == INVOICE_UBL
    [waiting] = gw.documents("--unlinked")
    assert (waiting["kind"], waiting["number"], waiting["invoice"]) == ("ubl", "2026-0042", None)
    assert waiting["current"] is False
    assert waiting["run_id"] == run["run_id"] and waiting["archived_path"] == run["archived_path"]
    assert waiting["details"]["payable_amount"] == "1210.00" and waiting["details"]["customer_name"] == "Voorbeeld B.V."

    items = gw.ingest("items.csv", invoice_rows("2026-0042", "2026-0043"))
    assert items["counts"]["invoices_created"] == 2
    assert codes(items) == ["documents_linked"] and items["notices"][0]["message"].startswith("1 earlier document")
    assert gw.documents("--unlinked") == []
    [linked] = gw.documents()
    assert (linked["invoice"], linked["current"], linked["linked_at"] is not None) == ("2026-0042", True, True)
    invoices = gw.invoices()
    assert (invoices["2026-0042"]["document"], invoices["2026-0042"]["documents"]) == ("ubl", ["ubl"])
    assert invoices["2026-0042"]["blocked"] is None
    assert (invoices["2026-0043"]["document"], invoices["2026-0043"]["blocked"]) == (None, "document missing")


def test_pdf_after_its_invoice_is_linked_at_once_and_a_newer_one_becomes_current(gw: Gateway) -> None:
    gw.ingest("items.csv", invoice_rows("2026-0042"))
    assert gw.invoices()["2026-0042"]["blocked"] == "document missing"
    first = gw.ingest("Factuur 2026-0042.pdf", make_pdf("v1"))
    assert (first["format"], first["detected"]) == ("pdf", {"document": "pdf", "pdf_version": "1.7"})
    assert [(p["code"], p["message"]) for p in first["notices"]] == [("document_linked", "linked to invoice 2026-0042")]
    invoice = gw.invoices()["2026-0042"]
    assert (invoice["document"], invoice["documents"], invoice["blocked"]) == ("pdf", ["pdf"], None)

    second = gw.ingest("Factuur 2026-0042 gecorrigeerd.pdf", make_pdf("v2"))
    assert second["notices"][0]["message"] == (
        "linked to invoice 2026-0042; it is now the invoice's current pdf document (1 earlier one(s) kept)"
    )
    newest, older = gw.documents()
    assert (newest["file"], newest["current"], older["file"], older["current"]) == (
        "Factuur 2026-0042 gecorrigeerd.pdf",
        True,
        "Factuur 2026-0042.pdf",
        False,
    )
    # The same content again is a duplicate run, not a third document.
    again = gw.ingest("kopie 2026-0042.pdf", make_pdf("v2"), code=1)
    assert again["status"] == "duplicate" and len(gw.documents()) == 2
    # A UBL beside the PDF: the invoice has both; "document" names the PDF (what an e-mail carries).
    gw.ingest("2026-0042.xml", INVOICE_UBL)
    assert gw.invoices()["2026-0042"]["documents"] == ["pdf", "ubl"]
    assert gw.invoices()["2026-0042"]["document"] == "pdf"


def test_pdf_before_its_invoice_links_to_the_most_specific_number(gw: Gateway) -> None:
    run = gw.ingest("Factuur 2026-0042.pdf", make_pdf())
    assert codes(run) == ["document_unlinked"]
    assert run["notices"][0]["message"] == (
        "there is no invoice whose number is in the file name 'Factuur 2026-0042' yet: "
        "the pdf document is kept and linked when the invoice arrives"
    )
    [waiting] = gw.documents("--unlinked")
    assert (waiting["number"], waiting["invoice"]) == (None, None)
    # Both "0042" and "2026-0042" are invoice numbers in the name: the longer one is meant.
    gw.ingest("items.csv", invoice_rows("0042", "2026-0042"))
    [doc] = gw.documents()
    assert (doc["number"], doc["invoice"], doc["current"]) == ("2026-0042", "2026-0042", True)
    assert gw.invoices()["0042"]["blocked"] == "document missing"
    # The same rule when the invoices are already there.
    gw.ingest("Scan 0042.pdf", make_pdf("scan"))
    assert gw.documents()[0]["invoice"] == "0042"
    assert gw.invoices()["0042"]["blocked"] is None


def test_credit_note_ubl_links_to_the_credit_note(gw: Gateway) -> None:
    gw.ingest("items.csv", invoice_rows("2026-0042", "2026-0044"))
    run = gw.ingest("cn.xml", CREDIT_NOTE_UBL)
    assert run["detected"]["type"] == "credit_note"
    assert [p["message"] for p in run["notices"]] == ["linked to invoice 2026-0044"]
    [doc] = gw.documents()
    assert doc["details"]["kind"] == "credit_note" and doc["details"]["due_date"] == "2026-04-01"


def test_pattern_and_administrations_are_kept_apart(gw: Gateway) -> None:
    gw.ingest("items.csv", invoice_rows("2026-0042"), admin="PAT")
    gw.ingest("acme.csv", invoice_rows("2026-0050"), admin="ACME")
    # PAT's pattern: INV_<number>_…; a name outside it names nothing and is kept unlinked with a warning.
    named = gw.ingest("INV_2026-0042_kopie.pdf", make_pdf("a"), admin="PAT")
    assert [p["message"] for p in named["notices"]] == ["linked to invoice 2026-0042"]
    unnamed = gw.ingest("Factuur 2026-0042.pdf", make_pdf("b"), admin="PAT")
    assert codes(unnamed, "warnings") == ["document_unnamed"] and unnamed["status"] == "performed"
    # ACME has no invoice 2026-0042; PAT's does not count.
    other = gw.ingest("2026-0042.xml", INVOICE_UBL, admin="ACME")
    assert codes(other) == ["document_unlinked"]
    assert [(d["administration"], d["file"]) for d in gw.documents("--unlinked")] == [
        ("ACME", "2026-0042.xml"),
        ("PAT", "Factuur 2026-0042.pdf"),
    ]
    assert [d["file"] for d in gw.documents("--unlinked", "--administration", "PAT")] == ["Factuur 2026-0042.pdf"]
    # A later PAT import that creates more invoices does not link ACME's document.
    gw.ingest("items2.csv", invoice_rows("2026-0042", "2026-0051"), admin="PAT")
    assert len(gw.documents("--unlinked")) == 2
    # Not required in PAT: no "document missing" there.
    assert gw.invoices("PAT")["2026-0051"]["blocked"] is None
    # The human tables.
    listing = gw.text("documents", "--unlinked").splitlines()
    assert listing[0].split() == ["id", "admin", "kind", "invoice", "current", "received", "file"]
    assert [line.split()[1:5] for line in listing[1:]] == [["ACME", "ubl", "-", "no"], ["PAT", "pdf", "-", "no"]]
    table = gw.text("invoices", "--administration", "ACME").splitlines()
    assert table[0].split() == ["admin", "invoice", "debtor", "due", "open", "status", "doc", "next", "send", "blocked"]
    assert table[1].split()[6] == "-" and table[1].endswith("docume…")  # the 80-column table shortens it


def test_invalid_documents_are_rejected_with_their_problems_and_not_stored(gw: Gateway) -> None:
    invalid = (DATA / "invalid-invoice-2026-0045.xml").read_bytes()
    run = gw.ingest("invalid.xml", invalid, code=1)
    assert run["status"] == "rejected" and "rejected" in run["archived_path"]
    assert [(e["row"], e["column"], e["code"]) for e in run["errors"]] == [
        (9, "cbc:IssueDate", "invalid_value"),
        (57, "cbc:Street", "unexpected_element"),
        (108, "cbc:PayableAmount", "missing_attribute"),
        (108, "cbc:PayableAmount", "invalid_value"),
    ]
    report = (gw.root / f"{run['archived_path']}.errors.txt").read_text("utf-8")
    path = "/Invoice/cac:AccountingCustomerParty/cac:Party/cac:PostalAddress/cbc:Street"
    assert f"line 57, column cbc:Street: {path}: This element is not expected." in report
    # validate prints the same problems, without a database.
    checked = gw("validate", str(gw.root / "drop" / "invalid.xml"), code=1)
    assert (checked["format"], checked["valid"], checked["errors"]) == ("ubl", False, run["errors"])

    fake = gw.ingest("2026-0042.pdf", b"<html>Not found</html>", code=1)
    assert (fake["status"], fake["format"], codes(fake, "errors")) == ("rejected", "pdf", ["not_a_pdf"])
    cut = gw.ingest("2026-0043.pdf", make_pdf()[:-40], code=1)
    assert codes(cut, "errors") == ["pdf_truncated"]
    assert gw("validate", str(gw.root / "drop" / "2026-0043.pdf"), code=1)["errors"] == cut["errors"]

    evil = b'<?xml version="1.0"?>\n<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file:///etc/hostname">]>\n'
    evil += b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>&x;</ID></Invoice>'
    hostile = gw.ingest("evil.xml", evil, code=1)
    assert codes(hostile, "errors") == ["xml_doctype_forbidden"]
    assert gw.documents() == []
    assert {r["file"] for r in gw("rejected")} == {"invalid.xml", "2026-0042.pdf", "2026-0043.pdf", "evil.xml"}


def test_validate_a_valid_document(gw: Gateway) -> None:
    path = gw.root / "Factuur 2026-0042.pdf"
    path.write_bytes(make_pdf())
    result = gw("validate", str(path))
    assert (result["valid"], result["format"], result["errors"]) == (True, "pdf", [])
    assert result["document"]["candidates"][:3] == ["Factuur 2026-0042", "Factuur 2026", "2026-0042"]
    patterned = gw("validate", str(path), "--administration", "PAT")
    assert patterned["valid"] and [w["code"] for w in patterned["warnings"]] == ["document_unnamed"]
    text = gw.text("validate", str(path), "--administration", "PAT")
    assert text.startswith("Factuur 2026-0042.pdf: valid (pdf; the file name names no invoice number)")
    assert "document_unnamed" in text
    text = gw.text("validate", str(path))
    assert text.startswith("Factuur 2026-0042.pdf: valid (pdf; the file name may name: Factuur 2026-0042, ")
    ubl = gw.root / "cn.xml"
    ubl.write_bytes(CREDIT_NOTE_UBL)
    result = gw("validate", str(ubl))
    assert (result["valid"], result["document"]["number"], result["document"]["details"]["type_code"]) == (
        True,
        "2026-0044",
        "381",
    )
    # --format ubl on a PDF: checked as UBL, so not XML at all.
    [error] = gw("validate", str(path), "--format", "ubl", code=1)["errors"]
    assert error["code"] == "empty_file" and "no XML element" in error["message"]


def test_a_held_snapshot_links_waiting_documents_only_when_released(gw: Gateway) -> None:
    gw.ingest("all.csv", invoice_rows(*(f"INV{i}" for i in range(30))))
    gw.ingest("INV30.pdf", make_pdf())
    # 25 of 30 open invoices would close: the drop guard holds the snapshot, nothing changes.
    held = gw.ingest("few.csv", invoice_rows(*(f"INV{i}" for i in range(5)), "INV30"), code=1)
    assert held["status"] == "held"
    assert [d["file"] for d in gw.documents("--unlinked")] == ["INV30.pdf"]
    released = gw("release", str(held["run_id"]))
    assert released["status"] == "performed" and codes(released) == ["documents_linked"]
    assert gw.documents("--unlinked") == [] and gw.invoices()["INV30"]["documents"] == ["pdf"]


def test_documents_inside_a_zip_are_members_like_any_other(gw: Gateway) -> None:
    data = make_zip(
        [
            ("export/Factuur 2026-0042.pdf", make_pdf()),
            ("export/2026-0043.xml", ubl_for("2026-0043")),
            ("export/open-items.csv", invoice_rows("2026-0042", "2026-0043")),
            ("export/2026-0044.pdf", b"not a pdf"),
        ]
    )
    run = gw.ingest("export.zip", data, code=1)  # one member is rejected
    members = {m["file"]: m for m in run["members"]}
    assert {name: (m["status"], m["format"]) for name, m in members.items()} == {
        "export.zip/Factuur 2026-0042.pdf": ("performed", "pdf"),
        "export.zip/2026-0043.xml": ("performed", "ubl"),
        "export.zip/open-items.csv": ("performed", "payt-csv"),
        "export.zip/2026-0044.pdf": ("rejected", "pdf"),
    }
    assert {n: i["documents"] for n, i in gw.invoices().items()} == {"2026-0042": ["pdf"], "2026-0043": ["ubl"]}
    # validate says the same per member.
    path = gw.root / "drop" / "export.zip"
    checked = {m["file"]: m for m in gw("validate", str(path), code=1)["members"]}
    assert checked["export.zip/Factuur 2026-0042.pdf"]["document"]["candidates"][:3] == [
        "Factuur 2026-0042",
        "Factuur 2026",
        "2026-0042",
    ]
    assert checked["export.zip/2026-0043.xml"]["document"]["number"] == "2026-0043"
    assert [e["code"] for e in checked["export.zip/2026-0044.pdf"]["errors"]] == ["not_a_pdf"]
    assert checked["export.zip/open-items.csv"]["valid"] and checked["export.zip/open-items.csv"]["rows"] == 2
