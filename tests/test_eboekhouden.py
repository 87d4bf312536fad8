"""The e-Boekhouden.nl connector against its fake (real SOAP over HTTP on loopback), into SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.app import App
from gateway.tables import payments
from tests.connector_support import SECRET_KEY, debtor_row, make_app, stored_documents, stored_invoices, table_count
from tests.fakes.base import FakeClock, Response
from tests.fakes.eboekhouden import NS, FakeEBoekhouden
from tests.test_pdf import make_pdf


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeEBoekhouden]:
    with FakeEBoekhouden(clock) as server:
        yield server


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYT_GATEWAY_EB_SECURITY_CODE_1", "CODE1-abc")
    monkeypatch.setenv("PAYT_GATEWAY_EB_SECURITY_CODE_2", "CODE2-DEF")
    monkeypatch.setenv("PAYT_GATEWAY_SECRET_KEY", SECRET_KEY)


@pytest.fixture
def app(tmp_path: Path, database_url: str, fake: FakeEBoekhouden, clock: FakeClock) -> Iterator[App]:
    connector = {"soap_url": fake.soap_url, "username": "demo"}
    admins = {"EB": {"name": "e-Boekhouden klant", "source": "eboekhouden", "connector": connector}}
    application = make_app(tmp_path, database_url, admins, clock)
    yield application
    application.engine.dispose()


def seed(fake: FakeEBoekhouden, relaties: int = 30, per_relatie: int = 5) -> None:
    start = date(2026, 1, 5)
    for r in range(relaties):
        code = fake.add_relatie(f"R{r:04d}", f"Klant {r} B.V.")
        for k in range(per_relatie):
            day = start + timedelta(days=(r * per_relatie + k) % 40)
            fake.add_invoice(code, f"F{r:04d}-{k}", "121", "20.5", invoice_date=day, description=f"Order {r}/{k}")


def calls(fake: FakeEBoekhouden, operation: str) -> list[etree._Element]:
    out = []
    for r in fake.log:
        if r.headers.get("soapaction", "").strip('"') == f"{NS}/{operation}":
            body = etree.fromstring(r.body).find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
            assert body is not None
            out.append(body[0])
    return out


def operations(fake: FakeEBoekhouden) -> list[str]:
    return [r.headers["soapaction"].strip('"').rsplit("/", 1)[1] for r in fake.log]


def test_full_poll_over_capped_lists_into_the_database(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=130, per_relatie=4)  # 520 open items: relations capped at 100, mutations at 500
    for day in range(40):  # other bookings on the same days: the mutation windows must be split
        for _ in range(3):
            fake.add_mutation("GeldOntvangen", date(2026, 1, 5) + timedelta(days=day), description="Kas")
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert (result.run["source"], result.run["counts"]["invoices_created"]) == ("eboekhouden", 520)
    ops = operations(fake)
    assert ops[0] == "OpenSession" and ops[-1] == "CloseSession" and ops.count("OpenSession") == 1
    assert ops.count("GetRelaties") == 1 + 30  # all (capped at 100), then each missing code
    assert ops.count("GetMutaties") >= 3 and ops.count("GetFacturen") == 1  # one, over all dates: the PDFs
    session = calls(fake, "OpenSession")
    assert session[0].findtext(f"{{{NS}}}SecurityCode1") == "CODE1-abc"
    for call in calls(fake, "GetOpenPosten") + calls(fake, "GetMutaties"):  # session and code 2 come first
        assert [c.tag.split("}")[1] for c in call][:2] == ["SessionID", "SecurityCode2"]
        assert call.findtext(f"{{{NS}}}SecurityCode2") == "CODE2-DEF"
    stored = stored_invoices(app, "EB")
    one = stored["F0102-3"]
    assert (one["amount_total"], one["amount_open"], one["debtor"], one["currency"]) == (
        "121.00",
        "100.50",
        "R0102",
        "EUR",
    )
    day = date(2026, 1, 5) + timedelta(days=(102 * 4 + 3) % 40)
    assert (one["invoice_date"], one["due_date"]) == (day.isoformat(), (day + timedelta(days=14)).isoformat())
    debtor = debtor_row(app, "R0102")
    assert (debtor["company_name"], debtor["street_1"], debtor["street_2"], debtor["postal_code"]) == (
        "Klant 102 B.V.",
        "Stationsplein 1",
        None,  # Adres2 is the postal block, not a second street line
        "3511 ED",
    )
    assert (debtor["country_code"], debtor["iban"], debtor["email"]) == (
        "NL",
        "NL91ABNA0417164300",
        "administratie@r0102.example.nl",
    )


def test_descriptions_come_from_the_mutations(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=2, per_relatie=2)
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    with app.engine.connect() as conn:
        from gateway.tables import invoices

        rows = dict(conn.execute(invoices.select().with_only_columns(invoices.c.number, invoices.c.description)).all())
    assert rows["F0001-1"] == "Order 1/1"


def test_single_element_lists(app: App, fake: FakeEBoekhouden) -> None:
    fake.add_relatie("  R1 ", " Enige B.V.  ", Land="Nederland", IBAN="nl91 abna 0417 1643 00", Email=" a@b.nl ")
    fake.add_invoice("  R1 ", "F-1", "99.99", invoice_date=date(2025, 12, 1), term_days=30)
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["errors"] == []
    stored = stored_invoices(app, "EB")
    assert (stored["F-1"]["amount_open"], stored["F-1"]["due_date"], stored["F-1"]["debtor"]) == (
        "99.99",
        "2025-12-31",
        "R1",
    )
    debtor = debtor_row(app, "R1")
    assert (debtor["company_name"], debtor["country_code"], debtor["iban"]) == (
        "Enige B.V.",
        "NL",
        "NL91ABNA0417164300",
    )


def test_due_dates_from_the_invoicing_module_and_else_the_invoice_date(app: App, fake: FakeEBoekhouden) -> None:
    fake.add_relatie("R1", "Klant B.V.")
    fake.add_invoice("R1", "M-1", "50", invoice_date=date(2026, 2, 1), term_days=21, module=True, mutation=False)
    fake.add_invoice("R1", "M-2", "60", invoice_date=date(2026, 2, 2), term_days=None)
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    stored = stored_invoices(app, "EB")
    assert stored["M-1"]["due_date"] == "2026-02-22"
    assert stored["M-2"]["due_date"] == "2026-02-02"
    assert [(w["code"], "M-2" in w["message"]) for w in result.run["warnings"]] == [("due_date_unknown", True)]
    # one GetFacturen over all dates (M-1's term and PDF), then M-2 asked for by number (should the list be capped)
    assert [c.findtext(f".//{{{NS}}}Factuurnummer") for c in calls(fake, "GetFacturen")] == [None, "M-2"]


def test_a_429_in_the_middle_is_waited_out(app: App, fake: FakeEBoekhouden, clock: FakeClock) -> None:
    seed(fake, relaties=3, per_relatie=2)
    body = b"<html><body>Too Many Requests</body></html>"
    fake.faults[3] = Response(429, body, {"Retry-After": "20", "Content-Type": "text/html"})
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["counts"]["invoices_created"] == 6
    assert clock.slept == [20.0]


def test_a_session_that_expires_mid_poll_is_reopened(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=3, per_relatie=2)
    fake.hooks[3] = fake.expire_sessions  # before the third call (GetRelaties)
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    ops = operations(fake)
    assert ops[:5] == ["OpenSession", "GetOpenPosten", "GetRelaties", "OpenSession", "GetRelaties"]
    assert ops.count("OpenSession") == 2 and ops[-1] == "CloseSession"


def test_wrong_security_codes_fail_the_run_with_a_clear_reason(
    app: App, fake: FakeEBoekhouden, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(fake, relaties=1, per_relatie=1)
    monkeypatch.setenv("PAYT_GATEWAY_EB_SECURITY_CODE_2", "wrong")
    result = app.imports.run("EB", "manual")
    assert result.status == "failed"
    assert "E0001" in result.run["reason"] and "SECURITY_CODE_1 and SECURITY_CODE_2" in result.run["reason"]
    assert "wrong" not in result.run["reason"]
    assert operations(fake) == ["OpenSession"]  # no session: nothing to close


def test_an_error_msg_fails_the_run_and_still_closes_the_session(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=2, per_relatie=2)
    fake.errors["GetMutaties"] = ("E0017", "Er is een fout opgetreden bij het ophalen van de mutaties.")
    result = app.imports.run("EB", "manual")
    assert result.status == "failed"
    assert "GetMutaties failed: E0017 Er is een fout opgetreden" in result.run["reason"]
    assert operations(fake)[-1] == "CloseSession" and not fake.sessions
    assert stored_invoices(app, "EB") == {}


def test_an_outage_mid_poll_applies_nothing(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=5, per_relatie=2)
    assert app.imports.run("EB", "manual").status == "performed"
    before = stored_invoices(app, "EB")
    fake.pay("F0000-0", "100.5")
    fake.outage_from = fake.data_requests + 3
    result = app.imports.run("EB", "schedule")
    assert result.status == "failed"
    assert "HTTP 503" in result.run["reason"]
    assert stored_invoices(app, "EB") == before


def test_a_soap_fault_fails_the_run_without_retries(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=1, per_relatie=1)
    fault = (
        b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Server was unable to process request."
        b"</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    )
    fake.faults[2] = Response(500, fault, {"Content-Type": "text/xml; charset=utf-8"})
    result = app.imports.run("EB", "manual")
    assert result.status == "failed"
    assert "GetOpenPosten failed with a SOAP fault: soap:Server; Server was unable" in result.run["reason"]
    assert operations(fake) == ["OpenSession", "GetOpenPosten", "CloseSession"]


def test_second_poll_with_changes(app: App, fake: FakeEBoekhouden) -> None:
    seed(fake, relaties=3, per_relatie=3)
    assert app.imports.run("EB", "manual").status == "performed"
    fake.pay("F0000-0", "100.5")  # paid
    fake.pay("F0001-1", "50.25")  # part paid
    fake.add_relatie("R0900", "Nieuw B.V.")
    fake.add_invoice("R0900", "F0900-0", "99.99")
    result = app.imports.run("EB", "schedule")
    assert result.status == "performed", result.run["reason"]
    counts = result.run["counts"]
    assert (counts["invoices_closed"], counts["invoices_created"], counts["debtors_created"]) == (1, 1, 1)
    stored = stored_invoices(app, "EB")
    assert stored["F0000-0"]["status"] == "paid"
    assert Decimal(stored["F0001-1"]["amount_open"]) == Decimal("50.25")
    assert stored["F0900-0"]["debtor"] == "R0900"
    assert table_count(app, payments) == 2


def test_check_opens_and_closes_a_session(app: App, fake: FakeEBoekhouden) -> None:
    connector = app.connectors(app.config.administrations["EB"])
    try:
        assert connector.authorization_url("http://127.0.0.1:1/cb", "s") is None
        assert "accepted the credentials of user 'demo'" in connector.check()
    finally:
        connector.close()
    assert operations(fake) == ["OpenSession", "CloseSession"] and not fake.sessions


def test_pdfs_of_invoicing_module_invoices_are_downloaded_and_linked(app: App, fake: FakeEBoekhouden) -> None:
    fake.add_relatie("R1", "Klant B.V.")
    fake.add_invoice("R1", "M/1", "50", invoice_date=date(2026, 2, 1), module=True)  # made in the invoicing module
    fake.add_invoice("R1", "M-2", "60", invoice_date=date(2026, 2, 2), module=True)
    fake.add_invoice("R1", "B-3", "70", invoice_date=date(2026, 2, 3))  # only booked: no PDF exists
    fake.pdf_outage = {"M-2"}
    result = app.imports.run("EB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert [(w["code"], "M-2" in w["message"]) for w in result.run["warnings"]] == [("document_download_failed", True)]
    docs = stored_documents(app, "EB")
    assert sorted(docs) == ["M/1"]  # linked by the number its vendor gave, whatever its file name
    assert docs["M/1"]["file"] == "eboekhouden/M/1.pdf"
    assert (app.config.data_dir / docs["M/1"]["archived_path"]).read_bytes() == make_pdf("Factuur M/1")
    assert not [r for r in fake.requests_to("/pdf/") if "B-3" in r.path]
    fake.pdf_outage = set()
    again = app.imports.run("EB", "manual")
    assert again.run["warnings"] == []
    assert sorted(stored_documents(app, "EB")) == ["M-2", "M/1"]
    assert len(fake.requests_to("/pdf/M%2F1.pdf")) == 1  # not fetched twice
