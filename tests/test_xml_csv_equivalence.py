"""The same open items delivered as payt-csv and as payt-xml give identical database states (SQLite and
PostgreSQL), through the CLI's ``ingest``: a first snapshot, then a second with payments, a paid invoice and
changed debtor data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
import sqlalchemy as sa

from gateway.cli import main
from gateway.store import make_engine

# One row per invoice: debtor fields, then invoice fields (payt-csv column names).
DEBTORS: dict[str, dict[str, str]] = {
    "10045": {
        "debtor_company_name": "Voorbeeld B.V.",
        "debtor_is_company": "true",
        "debtor_lastname": "Jansen",
        "debtor_email": "info@voorbeeld.nl",
        "debtor_invoice_email": "facturen@voorbeeld.nl",
        "debtor_phone": "030-1234567",
        "debtor_post_street_1": "Kerkstraat 1",
        "debtor_post_postalcode": "1234 AB",
        "debtor_post_city": "Utrecht",
        "debtor_post_country_code": "NL",
        "debtor_language_code": "nl",
        "debtor_vat_number": "NL123456789B01",
        "debtor_coc_number": "12345678",
        "debtor_iban": "NL91ABNA0417164300",
    },
    "10046": {
        "debtor_is_company": "false",
        "debtor_firstname": "Piet",
        "debtor_infix": "de",
        "debtor_lastname": "Vries",
        "debtor_reminder_email": "piet@example.nl",
        "debtor_mobile": "06-12345678",
        "debtor_post_street_1": "Dorpsweg 2",
        "debtor_post_street_2": "achterom",
        "debtor_post_postalcode": "2345 BC",
        "debtor_post_city": "Zeist",
        "debtor_iban": "NL00ABNA0417164300",
    },
    "20001": {
        "debtor_company_name": "Grenzeloos GmbH",
        "debtor_post_street_1": "Hauptstrasse 5",
        "debtor_post_postalcode": "10115",
        "debtor_post_city": "Berlin",
        "debtor_post_country_code": "DE",
        "debtor_language_code": "de",
    },
}
INVOICES: list[dict[str, str]] = [
    {"debtor_code": "10045", "invoice_number": "2026-0042", "invoice_date": "2026-02-28",
     "invoice_due_date": "2026-03-30", "invoice_total_amount_inc_vat": "1210.00",
     "invoice_open_amount_inc_vat": "610.00", "invoice_currency_code": "EUR",
     "invoice_description": "Onderhoud februari", "invoice_document_filename": "2026-0042.pdf"},
    {"debtor_code": "10045", "invoice_number": "2026-0043", "invoice_date": "2026-03-01",
     "invoice_due_date": "2026-03-31", "invoice_total_amount_inc_vat": "-50.00",
     "invoice_open_amount_inc_vat": "-50.00", "invoice_payment_condition": "30 dagen",
     "invoice_payment_reference": "1234567890123456", "invoice_order_number": "PO-7"},
    {"debtor_code": "10046", "invoice_number": "2026-0044", "invoice_date": "2026-03-01",
     "invoice_due_date": "2026-03-15", "invoice_total_amount_inc_vat": "99.95",
     "invoice_open_amount_inc_vat": "99.95", "invoice_sent_at": "2026-03-01T10:15:00+01:00"},
    {"debtor_code": "10046", "invoice_number": "2026-0045", "invoice_date": "2026-03-02",
     "invoice_due_date": "2026-03-01", "invoice_total_amount_inc_vat": "10.00",
     "invoice_open_amount_inc_vat": "10.00"},  # due before invoice date: a row error in both formats
    {"debtor_code": "20001", "invoice_number": "2026-0046", "invoice_date": "2026-03-03",
     "invoice_due_date": "2026-04-02", "invoice_total_amount_inc_vat": "0",
     "invoice_open_amount_inc_vat": "0", "invoice_currency_code": "USD"},
    {"debtor_code": "20001", "invoice_number": "2026-0047", "invoice_date": "2026-03-03",
     "invoice_due_date": "2026-04-02", "invoice_total_amount_inc_vat": "300.00",
     "invoice_open_amount_inc_vat": "300.00"},
]  # fmt: skip

XML_DEBTOR = (
    ("debtor_company_name", "Name", ""),
    ("debtor_firstname", "FirstName", ""),
    ("debtor_infix", "Infix", ""),
    ("debtor_lastname", "LastName", ""),
    ("address", "Address", ""),
    ("debtor_email", "Email", ""),
    ("debtor_invoice_email", "Email", ' type="invoice"'),
    ("debtor_reminder_email", "Email", ' type="reminder"'),
    ("debtor_phone", "Phone", ""),
    ("debtor_mobile", "Phone", ' type="mobile"'),
    ("debtor_language_code", "Language", ""),
    ("debtor_vat_number", "VatNumber", ""),
    ("debtor_coc_number", "CocNumber", ""),
    ("debtor_iban", "Iban", ""),
)
XML_ADDRESS = (
    ("debtor_post_street_1", "Street1"),
    ("debtor_post_street_2", "Street2"),
    ("debtor_post_postalcode", "PostalCode"),
    ("debtor_post_city", "City"),
    ("debtor_post_country_code", "Country"),
)
XML_INVOICE = (
    ("invoice_date", "InvoiceDate"),
    ("invoice_due_date", "DueDate"),
    ("invoice_total_amount_inc_vat", "TotalAmount"),
    ("invoice_open_amount_inc_vat", "OpenAmount"),
    ("invoice_currency_code", "Currency"),
    ("invoice_description", "Description"),
    ("invoice_payment_condition", "PaymentCondition"),
    ("invoice_payment_reference", "PaymentReference"),
    ("invoice_order_number", "OrderNumber"),
    ("invoice_sent_at", "SentAt"),
)


def as_csv(debtors: dict[str, dict[str, str]], invoices: list[dict[str, str]]) -> str:
    columns = sorted({c for d in debtors.values() for c in d} | {c for i in invoices for c in i})
    lines = [";".join(columns)]
    for invoice in invoices:
        row = {**debtors[invoice["debtor_code"]], **invoice}
        lines.append(";".join(row.get(c, "") for c in columns))
    return "\n".join(lines) + "\n"


def as_xml(code: str, debtors: dict[str, dict[str, str]], invoices: list[dict[str, str]]) -> str:
    out = [f'<OpenItems xmlns="urn:payt-gateway:open-items:1" administrationCode="{code}">']
    for debtor_code, data in debtors.items():
        company = f" isCompany={quoteattr(data['debtor_is_company'])}" if "debtor_is_company" in data else ""
        out.append(f"<Debtor code={quoteattr(debtor_code)}{company}>")
        for column, tag, attributes in XML_DEBTOR:
            if column == "address":
                parts = "".join(f"<{t}>{escape(data[c])}</{t}>" for c, t in XML_ADDRESS if c in data)
                out.append(f"<Address>{parts}</Address>")
            elif column in data:
                out.append(f"<{tag}{attributes}>{escape(data[column])}</{tag}>")
        for invoice in (i for i in invoices if i["debtor_code"] == debtor_code):
            out.append(f"<Invoice number={quoteattr(invoice['invoice_number'])}>")
            out.extend(f"<{t}>{escape(invoice[c])}</{t}>" for c, t in XML_INVOICE if c in invoice)
            if "invoice_document_filename" in invoice:
                out.append(f"<Document filename={quoteattr(invoice['invoice_document_filename'])}/>")
            out.append("</Invoice>")
        out.append("</Debtor>")
    return "\n".join([*out, "</OpenItems>"]) + "\n"


def second_snapshot() -> tuple[dict[str, dict[str, str]], list[dict[str, str]]]:
    """2026-0042 partly paid, 2026-0047 gone (paid), debtor 20001's address changed."""
    debtors = {code: dict(data) for code, data in DEBTORS.items()}
    debtors["20001"]["debtor_post_street_1"] = "Hauptstrasse 7"
    invoices = [dict(i) for i in INVOICES if i["invoice_number"] != "2026-0047"]
    invoices[0]["invoice_open_amount_inc_vat"] = "110.00"
    return debtors, invoices


def state(url: str, data_dir: Path, code: str) -> dict[str, Any]:
    engine = make_engine(url if not url.startswith("sqlite:///gateway.db") else f"sqlite:///{data_dir / 'gateway.db'}")
    try:
        with engine.connect() as conn:
            admin = conn.execute(sa.text("SELECT id FROM administrations WHERE code = :c"), {"c": code}).scalar_one()
            debtors = conn.execute(
                sa.text("SELECT * FROM debtors WHERE administration_id = :a ORDER BY code"), {"a": admin}
            ).mappings()
            invoices = conn.execute(
                sa.text(
                    "SELECT i.*, d.code AS debtor_code FROM invoices i JOIN debtors d ON d.id = i.debtor_id "
                    "WHERE i.administration_id = :a ORDER BY i.number"
                ),
                {"a": admin},
            ).mappings()
            payments = conn.execute(
                sa.text(
                    "SELECT i.number, p.amount_cents, p.paid_on FROM payments p JOIN invoices i ON i.id = p.invoice_id "
                    "WHERE i.administration_id = :a ORDER BY i.number, p.id"
                ),
                {"a": admin},
            ).all()
            drop = {"id", "administration_id", "debtor_id", "created_run_id", "updated_run_id"}
            return {
                "debtors": [{k: v for k, v in d.items() if k not in drop} for d in debtors],
                "invoices": [{k: v for k, v in i.items() if k not in drop} for i in invoices],
                "payments": [tuple(p) for p in payments],
            }
    finally:
        engine.dispose()


def test_csv_and_xml_give_the_same_database_state(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\ndata_dir = "."\ndatabase_url = "{database_url}"\n'
        '[administrations.CSVA]\nname = "csv"\nformat = "payt-csv"\n'
        '[administrations.XMLA]\nname = "xml"\nformat = "payt-xml"\n'
        "[administrations.CSVA.guards]\nmax_close_ratio = 1.0\n[administrations.XMLA.guards]\nmax_close_ratio = 1.0\n",
        "utf-8",
    )

    def ingest(path: Path, code: str, now: str) -> dict[str, Any]:
        capsys.readouterr()
        main(["--config", str(config), "--now", now, "--json", "ingest", str(path), "--administration", code])
        return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    runs: dict[str, list[dict[str, Any]]] = {"CSVA": [], "XMLA": []}
    for step, (debtors, invoices, now) in enumerate(
        [(DEBTORS, INVOICES, "2026-03-04T14:00:00+01:00"), (*second_snapshot(), "2026-03-05T14:00:00+01:00")]
    ):
        csv_file = tmp_path / f"open-items-{step}.csv"
        csv_file.write_text(as_csv(debtors, invoices), "utf-8")
        xml_file = tmp_path / f"open-items-{step}.xml"
        xml_file.write_text(as_xml("XMLA", debtors, invoices), "utf-8")
        runs["CSVA"].append(ingest(csv_file, "CSVA", now))
        runs["XMLA"].append(ingest(xml_file, "XMLA", now))
    for csv_run, xml_run in zip(runs["CSVA"], runs["XMLA"], strict=True):
        assert csv_run["status"] == xml_run["status"] == "performed", (csv_run, xml_run)
        assert csv_run["format"] == "payt-csv" and xml_run["format"] == "payt-xml"
        assert {k: v for k, v in csv_run["counts"].items() if k != "warnings"} == {
            k: v for k, v in xml_run["counts"].items() if k != "warnings"
        }
        assert [e["code"] for e in csv_run["errors"]] == [e["code"] for e in xml_run["errors"]]
        assert {w["code"] for w in csv_run["warnings"]} == {w["code"] for w in xml_run["warnings"]}
    assert [e["code"] for e in runs["XMLA"][0]["errors"]] == ["due_before_invoice_date"]
    assert runs["XMLA"][1]["counts"]["invoices_closed"] == 1
    csv_state, xml_state = state(database_url, tmp_path, "CSVA"), state(database_url, tmp_path, "XMLA")
    assert len(xml_state["invoices"]) == 5 and xml_state["payments"], "the comparison is about real data"
    assert csv_state == xml_state
