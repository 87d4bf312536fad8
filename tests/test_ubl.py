"""UBL 2.1 documents against the official OASIS XSDs: our NLCIUS files, the peers' real files, errors, hostile XML."""

from __future__ import annotations

import io
import os
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.errors import RejectFile
from parsers.ubl import parse_ubl, read_ubl, ubl_schema

DATA = Path(__file__).parent / "data" / "ubl"
# Real files written by others (Peppol BIS 3 examples, the SI-UBL 2.0 test set; see their README), kept
# in the repository so a clean clone tests against them.
PEERS = Path(os.environ.get("PAYT_GATEWAY_PEERS") or Path(__file__).parent / "data" / "peers")
INVOICE = (DATA / "invoice-2026-0042.xml").read_bytes()
CREDIT_NOTE = (DATA / "credit-note-2026-0044.xml").read_bytes()


def peer_files() -> list[Path]:
    files = sorted(PEERS.glob("*/*.xml"))
    if not files:
        pytest.fail(f"the peers' UBL files are missing under {PEERS} (set PAYT_GATEWAY_PEERS)")
    return files


def test_nlcius_invoice_key_fields() -> None:
    doc = parse_ubl(INVOICE)
    assert doc.as_json() == {
        "kind": "invoice",
        "number": "2026-0042",
        "issue_date": "2026-02-28",
        "due_date": "2026-03-30",
        "type_code": "380",
        "currency": "EUR",
        "payable_amount": "1210.00",
        "customer_name": "Voorbeeld B.V.",
        "customer_id": "10045",
        "supplier_name": "Acme B.V.",
    }
    assert doc.payable_amount == Decimal("1210.00") and doc.issue_date == date(2026, 2, 28)


def test_nlcius_credit_note_takes_its_due_date_from_payment_means() -> None:
    doc = parse_ubl(CREDIT_NOTE)
    assert (doc.kind, doc.number, doc.type_code, doc.due_date, doc.payable_amount) == (
        "credit_note",
        "2026-0044",
        "381",
        date(2026, 4, 1),
        Decimal("121.00"),
    )
    assert doc.customer_name == "Voorbeeld B.V." and doc.customer_id == "10045"


def test_peer_files_are_judged_like_a_correct_xsd_validator() -> None:
    """Peers' README: every file is valid except the two Greek examples (element order)."""
    rejected = {}
    for path in peer_files():
        try:
            doc = read_ubl(path.open("rb"))
        except RejectFile as exc:
            rejected[path.name] = exc.problems
            continue
        assert doc.number and doc.issue_date, path.name
    assert sorted(rejected) == ["GR-base-example-TaxRepresentative.xml", "GR-base-example-correct.xml"]
    for problems in rejected.values():
        assert [(p.code, p.column) for p in problems] == [("unexpected_element", "cac:AdditionalDocumentReference")]
        message = problems[0].message
        assert message.startswith("/Invoice/cac:AdditionalDocumentReference[1]: This element is not expected.")
        assert problems[0].row is not None and problems[0].row > 1


def test_invalid_invoice_reports_every_error_with_line_and_path() -> None:
    with pytest.raises(RejectFile) as caught:
        read_ubl((DATA / "invalid-invoice-2026-0045.xml").open("rb"))
    assert [(p.row, p.column, p.code, p.message) for p in caught.value.problems] == [
        (
            9,
            "cbc:IssueDate",
            "invalid_value",
            "/Invoice/cbc:IssueDate: '2026-02-30' is not a valid value of the atomic type 'xs:date'.",
        ),
        (
            57,
            "cbc:Street",
            "unexpected_element",
            "/Invoice/cac:AccountingCustomerParty/cac:Party/cac:PostalAddress/cbc:Street: This element is not "
            "expected. Expected is one of ( cbc:ID, cbc:AddressTypeCode, cbc:AddressFormatCode, cbc:Postbox, "
            "cbc:Floor, cbc:Room, cbc:StreetName, cbc:AdditionalStreetName, cbc:BlockName, cbc:BuildingName ).",
        ),
        (
            108,
            "cbc:PayableAmount",
            "missing_attribute",
            "/Invoice/cac:LegalMonetaryTotal/cbc:PayableAmount: The attribute 'currencyID' is required but missing.",
        ),
        (
            108,
            "cbc:PayableAmount",
            "invalid_value",
            "/Invoice/cac:LegalMonetaryTotal/cbc:PayableAmount: '1.210,00' is not a valid value of the local "
            "atomic type.",
        ),
    ]


def test_a_credit_note_is_checked_against_the_credit_note_schema() -> None:
    # InvoiceTypeCode belongs to an Invoice; a CreditNote needs CreditNoteTypeCode.
    bad = CREDIT_NOTE.replace(b"CreditNoteTypeCode", b"InvoiceTypeCode")
    with pytest.raises(RejectFile) as caught:
        parse_ubl(bad)
    [problem] = caught.value.problems
    assert (problem.row, problem.column, problem.code) == (10, "cbc:InvoiceTypeCode", "unexpected_element")
    assert problem.message.startswith("/CreditNote/cbc:InvoiceTypeCode: This element is not expected.")


def test_a_missing_required_element_is_named() -> None:
    start = INVOICE.index(b"  <cac:InvoiceLine>")
    end = INVOICE.index(b"</Invoice>")
    with pytest.raises(RejectFile) as caught:
        parse_ubl(INVOICE[:start] + INVOICE[end:])
    assert [(p.row, p.column, p.code, p.message) for p in caught.value.problems] == [
        (5, "Invoice", "missing_element", "/Invoice: Missing child element(s). Expected is ( cac:InvoiceLine ).")
    ]


def test_an_element_out_of_order_names_what_was_expected() -> None:
    start = INVOICE.index(b"  <cac:LegalMonetaryTotal>")
    end = INVOICE.index(b"</cac:LegalMonetaryTotal>\n") + len(b"</cac:LegalMonetaryTotal>\n")
    with pytest.raises(RejectFile) as caught:
        parse_ubl(INVOICE[:start] + INVOICE[end:])
    [problem] = caught.value.problems
    assert (problem.row, problem.column, problem.code) == (104, "cac:InvoiceLine", "unexpected_element")
    assert problem.message.startswith("/Invoice/cac:InvoiceLine[1]: This element is not expected. Expected is one of")
    assert "cac:LegalMonetaryTotal" in problem.message


@pytest.mark.parametrize(
    ("replace", "code", "row", "fragment"),
    [
        (b"<cbc:ID>2026-0042</cbc:ID>", "invalid_value", 8, "1 to 255 characters"),
        (b"<cbc:IssueDate>2026-02-28</cbc:IssueDate>", "invalid_value", 9, "not a date between 0001 and 9999"),
    ],
)
def test_values_the_schema_allows_but_the_gateway_cannot_store(
    replace: bytes, code: str, row: int, fragment: str
) -> None:
    value = b"<cbc:ID>   </cbc:ID>" if b"cbc:ID" in replace else b"<cbc:IssueDate>12026-02-28</cbc:IssueDate>"
    with pytest.raises(RejectFile) as caught:
        parse_ubl(INVOICE.replace(replace, value))
    [problem] = caught.value.problems
    assert (problem.code, problem.row) == (code, row) and fragment in problem.message


def test_other_xml_is_not_ubl() -> None:
    with pytest.raises(RejectFile) as caught:
        parse_ubl(b'<?xml version="1.0"?>\n<Invoice xmlns="urn:example"><ID>1</ID></Invoice>')
    [problem] = caught.value.problems
    assert problem.code == "not_ubl" and "{urn:example}Invoice" in problem.message


HOSTILE = {
    "xxe_local_file": b'<?xml version="1.0"?>\n<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>&x;</ID></Invoice>',
    "external_dtd": b'<?xml version="1.0"?>\n<!DOCTYPE Invoice SYSTEM "http://127.0.0.1:9/x.dtd">\n'
    b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>',
    "billion_laughs": b'<?xml version="1.0"?>\n<!DOCTYPE Invoice [<!ENTITY a "lol">'
    + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9))
    + b']>\n<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>&j;</ID></Invoice>',
    "xinclude": b'<?xml version="1.0"?>\n<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
    b'xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></Invoice>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_xml_is_a_file_error_in_milliseconds(name: str) -> None:
    started = time.monotonic()
    with pytest.raises(RejectFile) as caught:
        read_ubl(io.BytesIO(HOSTILE[name]))
    assert time.monotonic() - started < 1.0
    text = " ".join(p.message for p in caught.value.problems)
    assert "root:" not in text and "lollol" not in text  # nothing an entity pointed at
    # libxml2 itself may stop an entity explosion while parsing, before the DOCTYPE is looked at.
    allowed = {
        "xinclude": {"unexpected_element"},  # never processed: the xi:include element is just not UBL
        "billion_laughs": {"xml_doctype_forbidden", "xml_not_well_formed"},
    }.get(name, {"xml_doctype_forbidden"})
    assert caught.value.problems[0].code in allowed


def test_too_large_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("parsers.ubl.MAX_BYTES", 1000)
    with pytest.raises(RejectFile) as caught:
        read_ubl(io.BytesIO(INVOICE))
    assert caught.value.problems[0].code == "file_too_large"


def test_each_schema_is_compiled_once_per_process() -> None:
    parse_ubl(INVOICE)
    before = ubl_schema.cache_info()
    for _ in range(3):
        parse_ubl(INVOICE)
        parse_ubl(CREDIT_NOTE)
    after = ubl_schema.cache_info()
    assert after.currsize == 2 and after.misses <= before.misses + 1 and after.hits >= before.hits + 5
