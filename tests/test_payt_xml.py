"""payt-xml: schema validation with located errors, the shared business checks, streaming, the second process."""

from __future__ import annotations

import io
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.errors import RejectFile
from gateway.records import Entry, Snapshot
from parsers.payt_xml import VALIDATOR_NICENESS, Validator, XmlOptions, parse_payt_xml
from parsers.payt_xml_schema import ElementStream

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
OPEN = '<OpenItems xmlns="urn:payt-gateway:open-items:1" administrationCode="ACME" currency="EUR">\n'

# Line numbers in the expectations below count from the first line of VALID (line 1 is the declaration).
VALID = (
    HEAD
    + OPEN
    + """  <Debtor code="10045" isCompany="true">
    <Name>Voorbeeld B.V.</Name>
    <Address><Street1>Kerkstraat 1</Street1><PostalCode>1234 AB</PostalCode>
             <City>Utrecht</City><Country>NL</Country></Address>
    <Email type="invoice">facturen@voorbeeld.nl</Email>
    <Email>info@voorbeeld.nl</Email>
    <Phone type="mobile">06-12345678</Phone>
    <Language>nl</Language>
    <Iban>NL91ABNA0417164300</Iban>
    <Invoice number="2026-0042">
      <InvoiceDate>2026-02-28</InvoiceDate><DueDate>2026-03-30</DueDate>
      <TotalAmount>1210.00</TotalAmount><OpenAmount>610.00</OpenAmount>
      <Currency>EUR</Currency><Description>Onderhoud februari</Description>
      <Document filename="2026-0042.pdf"/>
    </Invoice>
    <Invoice number="2026-0043">
      <InvoiceDate>2026-03-01</InvoiceDate><DueDate>2026-03-31</DueDate>
      <TotalAmount>-50</TotalAmount><OpenAmount>-20.5</OpenAmount>
      <SentAt>2026-03-01T10:15:00+01:00</SentAt>
    </Invoice>
  </Debtor>
  <Debtor code="10046">
    <FirstName>Jan</FirstName><LastName>Jansen</LastName>
    <Address><Street1>Dorpsweg 2</Street1><PostalCode>2345 BC</PostalCode><City>Zeist</City></Address>
    <Invoice number="2026-0044">
      <InvoiceDate>2026-03-01</InvoiceDate><DueDate>2026-03-31</DueDate>
      <TotalAmount>99.95</TotalAmount><OpenAmount>99.95</OpenAmount>
    </Invoice>
  </Debtor>
</OpenItems>
"""
)


def parse(text: str, **options: object) -> tuple[Snapshot, list[Entry]]:
    snapshot = parse_payt_xml(io.BytesIO(text.encode("utf-8")), XmlOptions("ACME", **options))  # type: ignore[arg-type]
    return snapshot, list(snapshot.entries)


def rejected(text: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(RejectFile) as caught:
        parse(text)
    return [(p.row, p.column, p.code) for p in caught.value.problems]


def test_a_valid_file_gives_the_canonical_entries() -> None:
    snapshot, entries = parse(VALID)
    assert snapshot.administration_code == "ACME" and not snapshot.explicit_empty
    assert snapshot.rows == 3 and not snapshot.errors and not snapshot.warnings
    assert [(e.line, e.invoice.number, e.debtor.code) for e in entries] == [
        (12, "2026-0042", "10045"),
        (18, "2026-0043", "10045"),
        (27, "2026-0044", "10046"),
    ]
    first, credit, person = entries
    assert first.debtor.company_name == "Voorbeeld B.V." and first.debtor.is_company is True
    assert first.debtor.invoice_email == "facturen@voorbeeld.nl" and first.debtor.email == "info@voorbeeld.nl"
    assert first.debtor.mobile == "06-12345678" and first.debtor.phone is None
    address = (first.debtor.street_1, first.debtor.postal_code, first.debtor.city)
    assert address == ("Kerkstraat 1", "1234 AB", "Utrecht")
    assert first.debtor.country_code == "NL" and first.debtor.language_code == "nl"
    assert first.debtor.iban == "NL91ABNA0417164300"
    assert first.invoice.invoice_date == date(2026, 2, 28) and first.invoice.due_date == date(2026, 3, 30)
    assert (first.invoice.amount_total, first.invoice.amount_open) == (Decimal("1210.00"), Decimal("610.00"))
    assert first.invoice.description == "Onderhoud februari"
    assert first.invoice.document_filename == "2026-0042.pdf"
    assert credit.invoice.amount_total == Decimal("-50") and credit.invoice.sent_at is not None
    assert credit.invoice.sent_at.isoformat() == "2026-03-01T10:15:00+01:00"
    assert (person.debtor.firstname, person.debtor.lastname, person.debtor.company_name) == ("Jan", "Jansen", None)
    assert person.debtor.country_code == "NL", "the administration's default country"
    assert person.invoice.currency == "EUR"


def test_the_currency_attribute_is_the_default_of_the_file() -> None:
    _, entries = parse(VALID.replace('currency="EUR"', 'currency="USD"'))
    assert [e.invoice.currency for e in entries] == ["EUR", "USD", "USD"]


def test_every_schema_error_is_reported_with_its_line_and_path() -> None:
    text = (
        VALID.replace("<InvoiceDate>2026-02-28</InvoiceDate>", "<InvoiceDate>28-02-2026</InvoiceDate>")
        .replace("<OpenAmount>-20.5</OpenAmount>", "<OpenAmount>-50,50</OpenAmount>")
        .replace('<Debtor code="10046">', '<Debtor code="10046" isCompany="ja">')
        .replace("<City>Zeist</City>", "")
        .replace('number="2026-0044"', 'number="2026-0042"')
    )
    assert rejected(text) == [
        (13, "/OpenItems/Debtor[1]/Invoice[1]/InvoiceDate", "schema_violation"),
        (20, "/OpenItems/Debtor[1]/Invoice[2]/OpenAmount", "schema_violation"),
        (24, "/OpenItems/Debtor[2]/@isCompany", "schema_violation"),
        (26, "/OpenItems/Debtor[2]/Address", "schema_violation"),
        (12, "/OpenItems/Debtor[1]/Invoice[1]/@number", "duplicate_invoice_number"),
        (27, "/OpenItems/Debtor[2]/Invoice[1]/@number", "duplicate_invoice_number"),
    ]
    with pytest.raises(RejectFile) as caught:
        parse(text)
    messages = [p.message for p in caught.value.problems]
    assert "'28-02-2026' is not a date yyyy-mm-dd" in messages[0] and messages[0].startswith("line 13, ")
    assert "at most two decimals" in messages[1]
    assert "expected: City" in messages[3]
    assert "invoice 2026-0042 occurs on lines 12, 27" in messages[4]


def test_the_listed_schema_errors_are_capped_and_the_rest_counted() -> None:
    invoice = (
        '<Invoice number="N{i}"><InvoiceDate>2026-13-01</InvoiceDate><DueDate>2026-03-31</DueDate>'
        "<TotalAmount>1.00</TotalAmount><OpenAmount>1.00</OpenAmount></Invoice>\n"
    )
    body = "".join(invoice.format(i=i) for i in range(150))
    text = VALID.replace("  </Debtor>\n  <Debtor", body + "  </Debtor>\n  <Debtor", 1)
    with pytest.raises(RejectFile) as caught:
        parse(text)
    problems = caught.value.problems
    assert len(problems) == 101 and problems[-1].code == "schema_errors_truncated"
    assert problems[-1].message == "100 of 150 schema errors are listed; fix these first"


def test_doctype_and_wrong_root_are_file_errors() -> None:
    assert rejected(HEAD + '<!DOCTYPE x [<!ENTITY a "b">]>' + VALID[len(HEAD) :]) == [
        (None, None, "xml_doctype_forbidden")
    ]
    assert rejected('<OpenItems xmlns="urn:payt-gateway:open-items:2" administrationCode="A"/>') == [
        (1, None, "unknown_xml")
    ]
    assert rejected(VALID[:400])[0][2] == "xml_not_well_formed"


def test_business_checks_block_only_their_debtor_or_invoice() -> None:
    text = (
        VALID.replace("<DueDate>2026-03-30</DueDate>", "<DueDate>2026-02-01</DueDate>")
        .replace("<Iban>NL91ABNA0417164300</Iban>", "<Iban>NL00ABNA0417164300</Iban>")
        .replace("<Email>info@voorbeeld.nl</Email>", "<Email>info@@voorbeeld</Email>")
        .replace("<OpenAmount>99.95</OpenAmount>", "<OpenAmount>150.00</OpenAmount>")
    )
    snapshot, entries = parse(text)
    found = sorted((p.severity.value, p.row, p.column, p.code) for p in snapshot.problems)
    assert found == [
        ("error", 8, "/OpenItems/Debtor[1]/Email", "invalid_email"),
        ("error", 13, "/OpenItems/Debtor[1]/Invoice[1]/DueDate", "due_before_invoice_date"),
        ("warning", 11, "/OpenItems/Debtor[1]/Iban", "invalid_iban"),
        ("warning", 29, "/OpenItems/Debtor[2]/Invoice[1]/OpenAmount", "open_exceeds_total"),
    ]
    assert [e.invoice.number for e in entries] == ["2026-0044"], "the debtor with an error is blocked"
    assert snapshot.blocked_debtors == {"10045"}
    assert snapshot.blocked_invoices == {"2026-0042", "2026-0043"}


def test_explicit_empty_snapshot_and_its_contradiction() -> None:
    snapshot, entries = parse(HEAD + OPEN.replace(">", ' empty="true"/>'))
    assert snapshot.explicit_empty and snapshot.rows == 0 and entries == []
    snapshot, entries = parse(HEAD + OPEN + "</OpenItems>")
    assert not snapshot.explicit_empty and snapshot.rows == 0
    with pytest.raises(RejectFile) as caught:
        parse(VALID.replace('currency="EUR"', 'currency="EUR" empty="true"'))
    assert caught.value.problems[0].code == "empty_not_empty"


def test_a_debtor_without_invoices_is_a_notice() -> None:
    text = VALID.replace(
        "</OpenItems>",
        '  <Debtor code="1"><LastName>X</LastName><Address><Street1>s</Street1><PostalCode>1</PostalCode>'
        "<City>c</City></Address></Debtor>\n</OpenItems>",
    )
    snapshot, entries = parse(text)
    assert len(entries) == 3
    assert [(p.code, p.row, p.column) for p in snapshot.problems] == [
        ("debtor_without_invoices", 32, "/OpenItems/Debtor[3]")
    ]


def test_the_validator_in_a_second_process_rejects_after_the_last_entry(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_text(VALID, "utf-8")
    with good.open("rb") as stream:
        snapshot = parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0))
        assert snapshot.detected["validation"] == "parallel"
        assert [e.invoice.number for e in snapshot.entries] == ["2026-0042", "2026-0043", "2026-0044"]
    bad = tmp_path / "bad.xml"
    bad.write_text(VALID.replace("<DueDate>2026-03-31</DueDate>", "<DueDate>2026-02-30</DueDate>", 1), "utf-8")
    with bad.open("rb") as stream:
        snapshot = parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0))
        seen = []
        with pytest.raises(RejectFile) as caught:
            for entry in snapshot.entries:
                seen.append(entry.invoice.number)
        assert seen == ["2026-0042", "2026-0044"], "entries are read while the validator runs"
    assert [(p.row, p.column) for p in caught.value.problems] == [(19, "/OpenItems/Debtor[1]/Invoice[2]/DueDate")]


def test_the_validator_yields_the_cores_to_the_reading(tmp_path: Path) -> None:
    """The validator runs nicer than the process that reads the entries, which the import waits for."""
    path = tmp_path / "open-items.xml"
    path.write_text(VALID, "utf-8")
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    with path.open("rb") as stream, Validator(stream.fileno(), 0) as validator:
        niceness = os.getpriority(os.PRIO_PROCESS, validator.pid)
        validator.reject_if_invalid()
    assert niceness == min(19, ours + VALIDATOR_NICENESS) > ours


def test_a_repeated_debtor_code_is_reported_on_each_debtor() -> None:
    text = VALID.replace('<Debtor code="10046">', '<Debtor code="10045">')
    assert rejected(text) == [
        (3, "/OpenItems/Debtor[1]/@code", "duplicate_debtor_code"),
        (24, "/OpenItems/Debtor[2]/@code", "duplicate_debtor_code"),
    ]


def read_both_ways(text: str, tmp_path: Path) -> tuple[Snapshot, list[Entry], Snapshot, list[Entry]]:
    """The file read by the parser itself and by the worker process (``parallel_from_bytes=0``)."""
    local, local_entries = parse(text)
    path = tmp_path / "open-items.xml"
    path.write_text(text, "utf-8")
    with path.open("rb") as stream:
        remote = parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0))
        remote_entries = list(remote.entries)
    assert (local.detected["validation"], remote.detected["validation"]) == ("before", "parallel")
    return local, local_entries, remote, remote_entries


def test_the_worker_process_gives_what_the_parser_reads_itself(tmp_path: Path) -> None:
    text = (
        VALID.replace("<DueDate>2026-03-30</DueDate>", "<DueDate>2026-02-01</DueDate>")
        .replace("<Iban>NL91ABNA0417164300</Iban>", "<Iban>NL00ABNA0417164300</Iban>")
        .replace("<OpenAmount>99.95</OpenAmount>", "<OpenAmount>150.00</OpenAmount>")
        .replace(
            "</Debtor>\n</OpenItems>",
            "</Debtor>\n"
            '  <Debtor code="10047"><Name>Drie B.V.</Name><Address><Street1>s</Street1><PostalCode>1</PostalCode>'
            '<City>c</City></Address><Email>a@b.nl</Email><Phone type="mobile">06-1</Phone>'
            '<Invoice number="X-1"><InvoiceDate>2026-01-01</InvoiceDate><DueDate>2026-01-31</DueDate>'
            "<TotalAmount>0</TotalAmount><OpenAmount>0</OpenAmount><OrderNumber>PO 7</OrderNumber>"
            "<SentAt>2026-01-02</SentAt></Invoice>"
            '<Invoice number="X-2"><InvoiceDate>2026-01-01</InvoiceDate><DueDate>2026-01-31</DueDate>'
            "<TotalAmount>12.5</TotalAmount><OpenAmount>12.50</OpenAmount><Currency>USD</Currency>"
            "<SentAt>2026-01-02T08:30:00.250-05:00</SentAt></Invoice></Debtor>\n"
            '  <Debtor code="10048"><LastName>Leeg</LastName><Address><Street1>s</Street1>'
            "<PostalCode>1</PostalCode><City>c</City></Address></Debtor>\n</OpenItems>",
        )
    )
    local, local_entries, remote, remote_entries = read_both_ways(text, tmp_path)
    assert [e.invoice.number for e in remote_entries] == ["2026-0043", "2026-0044", "X-1", "X-2"]
    assert remote_entries == local_entries
    assert str(remote_entries[2].invoice.sent_at) == "2026-01-02"
    assert str(remote_entries[3].invoice.sent_at) == "2026-01-02 08:30:00.250000-05:00"
    assert [(p.code, p.row, p.column) for p in remote.problems] == [
        ("invalid_iban", 11, "/OpenItems/Debtor[1]/Iban"),
        ("due_before_invoice_date", 13, "/OpenItems/Debtor[1]/Invoice[1]/DueDate"),
        ("open_exceeds_total", 29, "/OpenItems/Debtor[2]/Invoice[1]/OpenAmount"),
        ("suspicious_phone", 32, '/OpenItems/Debtor[3]/Phone[@type="mobile"]'),
        ("debtor_without_invoices", 33, "/OpenItems/Debtor[4]"),
    ]
    assert remote.problems == local.problems
    assert (remote.rows, remote.blocked_debtors, remote.blocked_invoices) == (
        local.rows,
        local.blocked_debtors,
        local.blocked_invoices,
    )


def test_the_worker_process_rejects_what_the_parser_rejects(tmp_path: Path) -> None:
    for text, code in [
        (VALID.replace('number="2026-0044"', 'number="2026-0042"'), "duplicate_invoice_number"),
        (VALID.replace("<City>Zeist</City>", ""), "schema_violation"),
        (VALID.replace('currency="EUR"', 'currency="EUR" empty="true"'), "empty_not_empty"),
        (VALID.replace("</Invoice>\n  </Debtor>", "</Invoice>\n  </Debtr>", 1), "xml_not_well_formed"),
    ]:
        path = tmp_path / "open-items.xml"
        path.write_text(text, "utf-8")
        with pytest.raises(RejectFile) as local:
            parse(text)
        with path.open("rb") as stream, pytest.raises(RejectFile) as remote:
            list(parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0)).entries)
        assert remote.value.problems == local.value.problems
        assert remote.value.problems[0].code == code


def test_a_consumer_that_stops_early_stops_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "open-items.xml"
    path.write_text(VALID, "utf-8")
    with path.open("rb") as stream:
        entries = iter(parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0)).entries)
        assert next(entries).invoice.number == "2026-0042"
        entries.close()  # type: ignore[attr-defined]


ADDRESS = "<Address><Street1>Dorpsweg 2</Street1><PostalCode>2345 BC</PostalCode><City>Zeist</City></Address>"


def open_items_with(invoices: int, debtors: int = 1) -> bytes:
    invoice = (
        '<Invoice number="{n}"><InvoiceDate>2026-03-01</InvoiceDate><DueDate>2026-03-31</DueDate>'
        "<TotalAmount>10.00</TotalAmount><OpenAmount>10.00</OpenAmount></Invoice>\n"
    )
    parts = ['<OpenItems xmlns="urn:payt-gateway:open-items:1" administrationCode="ACME">\n']
    for d in range(debtors):
        parts.append(f'<Debtor code="D{d}"><Name>Bedrijf {d}</Name>{ADDRESS}\n')
        parts.extend(invoice.format(n=f"{d}-{n}") for n in range(invoices))
        parts.append("</Debtor>\n")
    parts.append("</OpenItems>\n")
    return "".join(parts).encode()


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize(("debtors", "invoices"), [(1, 5000), (2000, 3)])
def test_the_element_stream_keeps_a_bounded_tree(validate: bool, debtors: int, invoices: int) -> None:
    """However many invoices one debtor has, and however many debtors: the tree holds a bounded number of
    elements while the stream is read, and every element still comes."""
    stream = ElementStream(io.BytesIO(open_items_with(invoices, debtors)), validate=validate)
    largest = seen = 0
    for element in stream:
        seen += 1
        root = element.getroottree().getroot()
        largest = max(largest, sum(1 for _ in root.iter()))
    assert seen == debtors * (invoices + 1)
    # The parser reads ahead (~200 invoices here), and the debtor's data stays until its first invoice is
    # read; the whole document has 30,000 (one debtor) or 16,000 (many debtors) elements.
    assert largest <= 6 * 300, largest
    if validate:
        assert stream.verdict().valid
