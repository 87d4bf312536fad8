"""The Twinfield connector against its fake (real HTTP and SOAP on loopback), into SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from lxml import etree

from gateway.app import App
from gateway.tables import payments
from tests.connector_support import (
    SECRET_KEY,
    authorize,
    debtor_row,
    make_app,
    stored_documents,
    stored_invoices,
    table_count,
    token_store,
)
from tests.fakes.base import FakeClock, Response
from tests.fakes.twinfield import CLUSTER_PATH, TWF, FakeTwinfield, basic

SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeTwinfield]:
    with FakeTwinfield(clock) as server:
        yield server


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYT_GATEWAY_TW_CLIENT_SECRET", "twf-secret")
    monkeypatch.setenv("PAYT_GATEWAY_SECRET_KEY", SECRET_KEY)


def admins(fake: FakeTwinfield, **extra: object) -> dict[str, object]:
    connector = {"login_url": fake.base_url, "company_code": fake.company, "client_id": "twf-client", **extra}
    return {"TW": {"name": "Twinfield klant", "source": "twinfield", "connector": connector}}


def make(tmp_path: Path, database_url: str, fake: FakeTwinfield, clock: FakeClock, **extra: object) -> App:
    application = make_app(tmp_path, database_url, admins(fake, **extra), clock)
    authorize(application, "TW")
    return application


@pytest.fixture
def app(tmp_path: Path, database_url: str, fake: FakeTwinfield, clock: FakeClock) -> Iterator[App]:
    application = make(tmp_path, database_url, fake, clock)
    yield application
    application.engine.dispose()


def seed(fake: FakeTwinfield, debtors: int = 30, per_debtor: int = 5) -> None:
    for d in range(debtors):
        code = fake.add_debtor(str(1000 + d), f"Klant {d} B.V.")
        for k in range(per_debtor):
            day = date(2025, 11, 1) if k % 2 else date(2026, 2, 1)
            fake.add_invoice(code, f"{24000000 + d * 100 + k}", "1210.00", "1000.50", invoice_date=day)


def inner_requests(fake: FakeTwinfield) -> list[etree._Element]:
    out = []
    for r in fake.requests_to("processxml.asmx"):
        body = etree.fromstring(r.body).find(f"{SOAP}Body")
        assert body is not None
        out.append(etree.fromstring((body.findtext(f".//{{{TWF}}}xmlRequest") or "").encode()))
    return out


def soap_headers(fake: FakeTwinfield) -> list[tuple[str | None, str | None]]:
    out = []
    for r in fake.requests_to("processxml.asmx"):
        header = etree.fromstring(r.body).find(f"{SOAP}Header/{{{TWF}}}Header")
        assert header is not None
        out.append((header.findtext(f"{{{TWF}}}AccessToken"), header.findtext(f"{{{TWF}}}CompanyCode")))
    return out


def test_full_poll_over_several_book_years_into_the_database(
    tmp_path: Path, database_url: str, fake: FakeTwinfield, clock: FakeClock
) -> None:
    seed(fake)  # 150 open items of 30 debtors in book years 2025 and 2026
    fake.add_invoice("1003", "24099999", "300.00", "300.00", status="proposed")  # in a payment run: still open
    fake.pay("24000300", "1000.50")  # fully paid: matched, and its bank line is matched too
    app = make(tmp_path, database_url, fake, clock, first_year=2025)
    try:
        result = app.imports.run("TW", "manual")
        assert result.status == "performed", result.run["reason"]
        assert (result.run["source"], result.run["counts"]["invoices_created"]) == ("twinfield", 150)
        browses = [r for r in inner_requests(fake) if r.tag == "columns"]
        periods = [
            (
                b.findtext("column[field='fin.trs.head.yearperiod']/from"),
                b.findtext(".//column[field='fin.trs.line.matchstatus']/from"),
            )
            for b in browses
        ]
        assert periods == [
            (f"{y}/00", s) for s in ("available", "proposed") for y in (2025, 2026, 2027)
        ]  # one book year at a time, open statuses only
        reads = [r.findtext("code") for r in inner_requests(fake) if r.tag == "read"]
        assert sorted(reads) == [str(1000 + d) for d in range(30)]  # each debtor with open items, once
        assert all(token and company == fake.company for token, company in soap_headers(fake))
        assert len(fake.requests_to("accesstokenvalidation")) == 1  # the cluster is remembered with the tokens
        assert all(r.path.startswith(CLUSTER_PATH) for r in fake.requests_to("/webservices/"))
        stored = stored_invoices(app, "TW")
        one = stored["24000204"]
        assert (one["amount_total"], one["amount_open"], one["debtor"]) == ("1210.00", "1000.50", "1002")
        assert (one["invoice_date"], one["due_date"]) == ("2026-02-01", "2026-03-03")
        assert stored["24099999"]["amount_open"] == "300.00"
        assert "24000300" not in stored
        debtor = debtor_row(app, "1002")  # the invoice address, not the postal one; the default bank
        assert (debtor["street_1"], debtor["postal_code"], debtor["city"]) == ("Coolsingel 10", "3011 AD", "Rotterdam")
        assert (debtor["country_code"], debtor["iban"], debtor["company_name"]) == (
            "NL",
            "NL02ABNA0123456789",
            "Klant 2 B.V.",
        )
    finally:
        app.engine.dispose()


def test_single_element_lists_and_one_browse_over_all_periods(app: App, fake: FakeTwinfield) -> None:
    fake.add_debtor("2000", "  Enige Klant B.V. ", street="  Dorpsstraat 1 ", iban="nl91 abna 0417 1643 00")
    fake.add_invoice("2000", "F-1", "99.99", invoice_date=date(2019, 5, 6), currency="USD")
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    browses = [r for r in inner_requests(fake) if r.tag == "columns"]
    assert len(browses) == 2 and all(b.find("column[field='fin.trs.head.yearperiod']") is None for b in browses)
    stored = stored_invoices(app, "TW")
    assert (stored["F-1"]["amount_open"], stored["F-1"]["currency"], stored["F-1"]["invoice_date"]) == (
        "99.99",
        "USD",
        "2019-05-06",
    )
    debtor = debtor_row(app, "2000")
    assert (debtor["company_name"], debtor["street_1"], debtor["iban"]) == (
        "Enige Klant B.V.",
        "Dorpsstraat 1",
        "NL91ABNA0417164300",
    )


def test_a_429_in_the_middle_is_waited_out(app: App, fake: FakeTwinfield, clock: FakeClock) -> None:
    seed(fake, debtors=5, per_debtor=2)
    body = b'{"Message":"Fair use policy"}'
    fake.faults[fake.data_requests + 3] = Response(429, body, {"Retry-After": "37", "Content-Type": "application/json"})
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["counts"]["invoices_created"] == 10
    assert clock.slept == [37.0]


def test_the_fair_use_credit_budget_is_honoured(app: App, fake: FakeTwinfield, clock: FakeClock) -> None:
    seed(fake, debtors=14, per_debtor=1)
    fake.credits_per_minute = 8  # 2 browses + 14 debtor reads: two minutes' worth
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["counts"]["invoices_created"] == 14
    assert clock.slept and all(1 <= s <= 60 for s in clock.slept)


def test_an_access_token_that_expires_mid_poll_is_refreshed(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=40, per_debtor=1)
    fake.credits_per_minute = None
    fake.seconds_per_request = 120  # 42 requests: 84 minutes, the token lives 60
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    grants = [r.form()["grant_type"] for r in fake.requests_to("/connect/token")]
    assert grants == ["authorization_code", "refresh_token"]
    tokens = {token for token, _ in soap_headers(fake)}
    assert len(tokens) == 2


def test_a_token_refused_mid_poll_with_a_soap_fault_is_refreshed_once(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=5, per_debtor=2)
    fake.hooks[fake.data_requests + 4] = fake.revoke_access_tokens
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    assert [r.form()["grant_type"] for r in fake.requests_to("/connect/token")][-1] == "refresh_token"
    assert all(r.headers["authorization"] == basic("twf-client", "twf-secret") for r in fake.requests_to("/token"))


def test_refresh_token_rotation_persists_and_the_old_one_is_refused(
    app: App, fake: FakeTwinfield, clock: FakeClock
) -> None:
    seed(fake, debtors=2, per_debtor=2)
    store = token_store(app, "TW", clock)
    before = store.load()
    assert before is not None and before.extra["cluster_url"] == fake.cluster_url
    clock.advance(3600)
    assert app.imports.run("TW", "manual").status == "performed"
    after = store.load()
    assert after is not None and after.refresh_token in fake.refresh_tokens
    assert after.refresh_token != before.refresh_token
    assert after.extra["cluster_url"] == fake.cluster_url  # kept across the refresh
    old = httpx.post(
        f"{fake.base_url}/auth/authentication/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": before.refresh_token},
        headers={"Authorization": basic("twf-client", "twf-secret")},
    )
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one(
    app: App, fake: FakeTwinfield, clock: FakeClock
) -> None:
    seed(fake, debtors=1, per_debtor=1)
    fake.rotate_refresh_tokens = False
    before = token_store(app, "TW", clock).load()
    for _ in range(2):
        clock.advance(3600)
        assert app.imports.run("TW", "manual").status == "performed"
    after = token_store(app, "TW", clock).load()
    assert before is not None and after is not None and after.refresh_token == before.refresh_token
    assert after.access_token != before.access_token


def test_a_revoked_authorisation_fails_the_run_and_says_connect(
    app: App, fake: FakeTwinfield, clock: FakeClock
) -> None:
    seed(fake, debtors=1, per_debtor=1)
    fake.refresh_tokens.clear()
    fake.revoke_access_tokens()
    result = app.imports.run("TW", "manual")
    assert result.status == "failed"
    assert "invalid_grant" in result.run["reason"] and "run connect again" in result.run["reason"]


def test_an_error_document_fails_the_run_with_its_message(
    tmp_path: Path, database_url: str, fake: FakeTwinfield, clock: FakeClock
) -> None:
    seed(fake, debtors=2, per_debtor=2)
    app = make(tmp_path, database_url, fake, clock, browse_code="999")
    try:
        result = app.imports.run("TW", "manual")
        assert result.status == "failed"
        assert "Browse code 999 bestaat niet." in result.run["reason"]
        assert stored_invoices(app, "TW") == {}
    finally:
        app.engine.dispose()


def test_a_debtor_that_cannot_be_read_blocks_only_its_own_invoices(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=2, per_debtor=1)
    fake.add_invoice("1001", "X-1", "50.00")
    del fake.debtors["1001"]  # deleted after the invoice was booked
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    assert [w["code"] for w in result.run["warnings"]] == ["debtor_unreadable"]
    assert "Object 1001 bestaat niet." in result.run["warnings"][0]["message"]
    # the browse name alone is no valid debtor (no address): its rows are errors, the others are imported
    assert {(e["row"], e["column"]) for e in result.run["errors"]} >= {
        (3, "debtor_post_street_1"),
        (4, "debtor_post_city"),
    }
    assert sorted(stored_invoices(app, "TW")) == ["24000000"]


def test_a_soap_fault_fails_the_run_without_retries(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=1, per_debtor=1)
    del fake.offices[fake.company]
    before = len(fake.requests_to("processxml.asmx"))
    result = app.imports.run("TW", "manual")
    assert result.status == "failed"
    assert f"Geen toegang tot administratie {fake.company}" in result.run["reason"]
    assert len(fake.requests_to("processxml.asmx")) == before + 1  # a fault (HTTP 500) is an answer, not an outage


def test_a_browse_that_cannot_be_paged_fails_the_run(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=3, per_debtor=2)
    fake.max_browse_rows = 4
    result = app.imports.run("TW", "manual")
    assert result.status == "failed"
    assert "returned 4 of 6 lines" in result.run["reason"] and "first_year" in result.run["reason"]


def test_a_doctype_in_an_answer_is_refused(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=1, per_debtor=1)
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&e;</soap:Body></soap:Envelope>'
    )
    fake.faults[fake.data_requests + 1] = Response(200, hostile, {"Content-Type": "text/xml"})
    result = app.imports.run("TW", "manual")
    assert result.status == "failed"
    assert "DOCTYPE" in result.run["reason"] and "root:" not in result.run["reason"]


def test_an_outage_mid_poll_applies_nothing(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=5, per_debtor=2)
    assert app.imports.run("TW", "manual").status == "performed"
    before = stored_invoices(app, "TW")
    fake.pay("24000000", "1000.50")
    fake.outage_from = fake.data_requests + 3
    result = app.imports.run("TW", "schedule")
    assert result.status == "failed"
    assert "HTTP 503" in result.run["reason"]
    assert stored_invoices(app, "TW") == before


def test_second_poll_with_changes(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=3, per_debtor=3)
    assert app.imports.run("TW", "manual").status == "performed"
    fake.pay("24000000", "1000.50")  # paid
    fake.pay("24000101", "600.25")  # part paid
    fake.add_debtor("1900", "Nieuw B.V.")
    fake.add_invoice("1900", "25000001", "99.99")
    result = app.imports.run("TW", "schedule")
    assert result.status == "performed", result.run["reason"]
    counts = result.run["counts"]
    assert (counts["invoices_closed"], counts["invoices_created"], counts["debtors_created"]) == (1, 1, 1)
    stored = stored_invoices(app, "TW")
    assert stored["24000000"]["status"] == "paid"
    assert Decimal(stored["24000101"]["amount_open"]) == Decimal("400.25")
    assert stored["25000001"]["debtor"] == "1900"
    assert table_count(app, payments) == 2


def test_check_names_the_organisation_and_the_company(app: App) -> None:
    connector = app.connectors(app.config.administrations["TW"])
    try:
        assert connector.check() == (
            "Twinfield organisation FAKEORG is authorised; company NLA000001 (Fake Holding B.V.) is reachable"
        )
    finally:
        connector.close()


def test_twinfield_invoices_stay_without_a_pdf(app: App, fake: FakeTwinfield) -> None:
    seed(fake, debtors=2, per_debtor=2)
    result = app.imports.run("TW", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["warnings"] == [] and not [n for n in result.run["notices"] if "document" in n["code"]]
    assert {n: i["documents"] for n, i in stored_invoices(app, "TW").items()} == {
        n: [] for n in ("24000000", "24000001", "24000100", "24000101")
    }
    assert stored_documents(app, "TW") == {}
    assert not [r for r in fake.log if "pdf" in r.url.lower() or "document" in r.url.lower()]
