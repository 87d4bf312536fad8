"""The Exact Online connector against its fake (real HTTP on loopback), into SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import cast

import httpx
import pytest

from connectors.exact_online import ExactOnline
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
from tests.fakes.exact import FakeExact
from tests.test_pdf import make_pdf


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeExact]:
    with FakeExact(clock) as server:
        yield server


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYT_GATEWAY_EX_CLIENT_SECRET", "exact-secret")
    monkeypatch.setenv("PAYT_GATEWAY_SECRET_KEY", SECRET_KEY)


def admins(fake: FakeExact, division: int | None = None) -> dict[str, object]:
    connector = {"base_url": fake.base_url, "division": division or fake.division, "client_id": "exact-client"}
    return {"EX": {"name": "Exact klant", "source": "exact_online", "connector": connector}}


@pytest.fixture
def app(tmp_path: Path, database_url: str, fake: FakeExact, clock: FakeClock) -> Iterator[App]:
    application = make_app(tmp_path, database_url, admins(fake), clock)
    authorize(application, "EX")
    yield application
    application.engine.dispose()


def seed(fake: FakeExact, accounts: int = 30, per_account: int = 5) -> None:
    for a in range(accounts):
        account = fake.add_account(str(a + 1), f"Klant {a} B.V.")
        fake.add_bank_account(account, "NL91 ABNA 0417 1643 00")
        for k in range(per_account):
            fake.add_invoice(account, 24000000 + a * 100 + k, 1210.0, 1000.5)


def test_full_poll_over_several_pages_into_the_database(app: App, fake: FakeExact) -> None:
    seed(fake)  # 150 open items: receivables in pages of 60 through __next
    result = app.imports.run("EX", "manual")
    assert result.status == "performed", result.run["reason"]
    assert (result.run["source"], result.run["counts"]["invoices_created"]) == ("exact_online", 150)
    pages = fake.requests_to("ReceivablesList")
    assert len(pages) == 3
    assert [p.param("$skiptoken") for p in pages] == [None, "446L", "506L"]
    assert all(p.headers["accept"] == "application/json" for p in fake.log if p.path.startswith("/api/v1"))
    assert all(len(p.url) <= 6000 for p in fake.log)
    stored = stored_invoices(app, "EX")
    one = stored["24000204"]
    assert (one["amount_total"], one["amount_open"], one["debtor"]) == ("1210.00", "1000.50", "3")
    debtor = debtor_row(app, "3")  # the padded code "                 3" trimmed, like Country and Language
    assert (debtor["country_code"], debtor["language_code"], debtor["iban"]) == ("NL", "nl", "NL91ABNA0417164300")
    assert debtor["company_name"] == "Klant 2 B.V."


def test_a_missing_sales_invoice_keeps_the_open_amount_as_total_with_a_warning(app: App, fake: FakeExact) -> None:
    account = fake.add_account("77", "Memoriaal B.V.")
    fake.add_invoice(account, 5001, 300.0, 120.0, sales_invoice=False)
    result = app.imports.run("EX", "manual")
    assert result.status == "performed"
    assert stored_invoices(app, "EX")["5001"]["amount_total"] == "120.00"
    assert [w["code"] for w in result.run["warnings"]] == ["total_unknown"]


def test_a_429_in_the_middle_is_waited_out(app: App, fake: FakeExact, clock: FakeClock) -> None:
    seed(fake)
    reset = int((clock.now().timestamp() + 61) * 1000)
    headers = {
        "X-RateLimit-Minutely-Limit": "60",
        "X-RateLimit-Minutely-Remaining": "0",
        "X-RateLimit-Minutely-Reset": str(reset),
        "Content-Type": "application/json",
    }
    fake.faults[fake.data_requests + 2] = Response(429, b'{"error":{"message":{"value":"Too many"}}}', headers)
    result = app.imports.run("EX", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["counts"]["invoices_created"] == 150
    assert 55 <= sum(clock.slept) <= 62  # until the minutely reset (epoch milliseconds)


def test_an_exhausted_minute_pauses_before_the_next_request(app: App, fake: FakeExact, clock: FakeClock) -> None:
    seed(fake)
    fake.minutely_limit = 4
    result = app.imports.run("EX", "manual")
    assert result.status == "performed", result.run["reason"]
    assert clock.slept and all(50 <= s <= 61 for s in clock.slept)
    assert fake.requests_to("ReceivablesList")  # and no request was refused with 429 on the way
    assert len(fake.log) == len({id(r) for r in fake.log})


def test_an_access_token_that_expires_mid_poll_is_refreshed(app: App, fake: FakeExact, clock: FakeClock) -> None:
    seed(fake, accounts=60, per_account=5)  # 300 items: 5 pages, ~12 requests
    fake.seconds_per_request = 60  # ten minutes pass during the poll
    result = app.imports.run("EX", "manual")
    assert result.status == "performed", result.run["reason"]
    token_calls = fake.requests_to("/api/oauth2/token")
    assert [r.form()["grant_type"] for r in token_calls] == ["authorization_code", "refresh_token"]
    assert not [r for r in fake.log if r.path == "/api/oauth2/token" and "TooEarly" in str(r.headers)]


def test_a_token_refused_early_waits_for_the_570_second_rule(app: App, fake: FakeExact, clock: FakeClock) -> None:
    seed(fake)
    clock.advance(100)
    fake.hooks[fake.data_requests + 2] = fake.revoke_access_tokens  # refused 100 s after it was issued
    result = app.imports.run("EX", "manual")
    assert result.status == "performed", result.run["reason"]
    assert any(460 <= s <= 470 for s in clock.slept)  # waited until 570 s after the last token request
    assert fake.last_token_request is not None
    assert [r.form()["grant_type"] for r in fake.requests_to("/api/oauth2/token")][-1] == "refresh_token"


def test_refresh_token_rotation_persists_before_use(app: App, fake: FakeExact, clock: FakeClock) -> None:
    seed(fake, accounts=2, per_account=2)
    store = token_store(app, "EX", clock)
    before = store.load()
    assert before is not None
    clock.advance(600)
    assert app.imports.run("EX", "manual").status == "performed"
    after = store.load()
    assert after is not None and after.refresh_token == fake.refresh_token != before.refresh_token
    assert after.obtained_at == fake.last_token_request
    old = httpx.post(
        f"{fake.base_url}/api/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": before.refresh_token,
            "client_id": "exact-client",
            "client_secret": "exact-secret",
        },
    )
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"


def test_concurrent_refreshes_are_serialised(app: App, fake: FakeExact, clock: FakeClock) -> None:
    clock.advance(590)
    connectors = [cast(ExactOnline, app.connectors(app.config.administrations["EX"])) for _ in range(3)]
    start = threading.Barrier(len(connectors))
    got: list[str] = []

    def work(connector: ExactOnline) -> None:
        start.wait()
        got.append(connector.session.access_token())

    threads = [threading.Thread(target=work, args=(c,)) for c in connectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in connectors:
        c.close()
    refreshes = [r for r in fake.requests_to("/api/oauth2/token") if r.form()["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1  # one worker refreshed; the others found its committed tokens
    assert len(set(got)) == 1 and len(got) == 3
    stored = token_store(app, "EX", clock).load()
    assert stored is not None and stored.refresh_token == fake.refresh_token


def test_a_revoked_authorisation_fails_the_run_and_says_connect(app: App, fake: FakeExact, clock: FakeClock) -> None:
    seed(fake, accounts=1, per_account=1)
    fake.refresh_token = "revoked-elsewhere"
    clock.advance(600)
    result = app.imports.run("EX", "manual")
    assert result.status == "failed"
    assert "invalid_grant" in result.run["reason"] and "run connect again" in result.run["reason"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("division", "Forbidden - WrongDivision"),
        ("syntax", "Error in query syntax."),
    ],
)
def test_an_error_body_fails_the_run_with_its_text(app: App, fake: FakeExact, fault: str, reason: str) -> None:
    seed(fake, accounts=2, per_account=2)
    if fault == "division":
        fake.division = 1
    else:
        body = b'{"error":{"code":"","message":{"lang":"","value":"Error in query syntax."}}}'
        fake.faults[fake.data_requests + 2] = Response(400, body, {"Content-Type": "application/json"})
    result = app.imports.run("EX", "manual")
    assert result.status == "failed"
    assert reason in result.run["reason"]
    assert stored_invoices(app, "EX") == {}


def test_an_outage_mid_poll_applies_nothing(app: App, fake: FakeExact) -> None:
    seed(fake)
    assert app.imports.run("EX", "manual").status == "performed"
    before = stored_invoices(app, "EX")
    fake.set_open(24000000, None)
    fake.outage_from = fake.data_requests + 3
    result = app.imports.run("EX", "schedule")
    assert result.status == "failed"
    assert "HTTP 503" in result.run["reason"]
    assert stored_invoices(app, "EX") == before


def test_second_poll_with_changes(app: App, fake: FakeExact) -> None:
    seed(fake, accounts=3, per_account=3)
    assert app.imports.run("EX", "manual").status == "performed"
    fake.set_open(24000000, None)  # paid
    fake.set_open(24000101, 400.25)  # part paid
    account = fake.add_account("900", "Nieuw B.V.")
    fake.add_invoice(account, 25000001, 99.99)
    result = app.imports.run("EX", "schedule")
    assert result.status == "performed", result.run["reason"]
    counts = result.run["counts"]
    assert (counts["invoices_closed"], counts["invoices_created"], counts["debtors_created"]) == (1, 1, 1)
    stored = stored_invoices(app, "EX")
    assert stored["24000000"]["status"] == "paid"
    assert Decimal(stored["24000101"]["amount_open"]) == Decimal("400.25")
    assert stored["25000001"]["debtor"] == "900"
    assert table_count(app, payments) == 2


def test_pdfs_of_invoices_with_a_document_are_downloaded_and_linked(app: App, fake: FakeExact) -> None:
    account = fake.add_account("7", "Klant B.V.")
    fake.add_invoice(account, 24000001, 121.0, document=True)
    fake.add_invoice(account, 24000002, 242.0)  # no document linked in Exact: nothing to ask for
    result = app.imports.run("EX", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["warnings"] == []
    assert [n["code"] for n in result.run["notices"] if n["code"].startswith("documents")] == ["documents_downloaded"]
    lookups = fake.requests_to("documents/DocumentAttachments")
    assert len(lookups) == 1 and (lookups[0].param("$filter") or "").startswith("Document eq guid'")
    files = fake.requests_to("/docs/SysAttachment.aspx")
    assert [(r.param("Download"), r.headers["authorization"].startswith("Bearer ")) for r in files] == [("1", True)]
    docs = stored_documents(app, "EX")
    assert sorted(docs) == ["24000001"]
    assert (app.config.data_dir / docs["24000001"]["archived_path"]).read_bytes() == make_pdf("Factuur 24000001")
    assert docs["24000001"]["file"] == "exact_online/24000001.pdf"
    assert {n: i["documents"] for n, i in stored_invoices(app, "EX").items()} == {"24000001": ["pdf"], "24000002": []}
    assert app.imports.run("EX", "manual").status == "performed"
    assert len(fake.requests_to("/docs/SysAttachment.aspx")) == 1  # not fetched twice
