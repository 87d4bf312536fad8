"""The Moneybird connector against its fake (real HTTP on loopback), into SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway.app import App
from gateway.tables import payments
from tests.connector_support import (
    SECRET_KEY,
    authorize,
    list_runs_json,
    make_app,
    stored_documents,
    stored_invoices,
    table_count,
    token_store,
)
from tests.fakes.base import FakeClock, Response
from tests.fakes.moneybird import FakeMoneybird
from tests.test_pdf import make_pdf

BAD_FILTER = b'{"error":"Filter is invalid"}'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeMoneybird]:
    with FakeMoneybird(clock) as server:
        yield server


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYT_GATEWAY_MB_TOKEN", "personal-token")
    monkeypatch.setenv("PAYT_GATEWAY_MBO_CLIENT_SECRET", "mb-secret")
    monkeypatch.setenv("PAYT_GATEWAY_SECRET_KEY", SECRET_KEY)


def admins(fake: FakeMoneybird, **extra: object) -> dict[str, object]:
    connector = {
        "base_url": f"{fake.base_url}/api/v2",
        "administration_id": fake.administration_id,
        "documents_per_poll": 3,  # the polls of hundreds of invoices download a few PDFs, not 25 each
    }
    return {
        "MB": {"name": "Personal token", "source": "moneybird", "connector": connector},
        "MBO": {
            "name": "OAuth",
            "source": "moneybird",
            "connector": {**connector, "client_id": "mb-client", "oauth_url": f"{fake.base_url}/oauth"},
        },
        **extra,
    }


@pytest.fixture
def app(tmp_path: Path, database_url: str, fake: FakeMoneybird, clock: FakeClock) -> Iterator[App]:
    application = make_app(tmp_path, database_url, admins(fake), clock)
    yield application
    application.engine.dispose()


def seed(fake: FakeMoneybird, contacts: int = 25, per_contact: int = 10) -> list[str]:
    """Open invoices over several years (the default period this_year would hide most of them)."""
    ids = []
    for c in range(contacts):
        contact = fake.add_contact(f"{1000 + c}", f"Klant {c} B.V.", sepa_iban="NL91ABNA0417164300")
        for k in range(per_contact):
            ids.append(
                fake.add_invoice(
                    contact, f"F{c:03d}-{k:02d}", "121.00", "100.50", invoice_date=date(2019 + k % 8, 2, 1)
                )
            )
    return ids


def test_full_poll_over_several_pages_into_the_database(app: App, fake: FakeMoneybird) -> None:
    seed(fake)  # 250 open invoices: pages of 100, 100 and a short 50
    result = app.imports.run("MB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert (result.run["source"], result.run["trigger"]) == ("moneybird", "manual")
    assert result.run["counts"]["invoices_created"] == 250
    assert result.run["counts"]["debtors_created"] == 25
    pages = fake.requests_to("sales_invoices.json")
    assert [p.param("page") for p in pages] == ["1", "2", "3"]
    first = pages[0].param("filter") or ""
    assert "state:open|pending_payment|reminded|late" in first and "period:20000101..20991231" in first
    assert pages[0].param("per_page") == "100"
    stored = stored_invoices(app, "MB")
    assert len(stored) == 250
    one = stored["F003-05"]
    assert (one["amount_total"], one["amount_open"], one["debtor"]) == ("121.00", "100.50", "1003")
    assert one["invoice_date"] == "2024-02-01"  # five years old: present thanks to the wide period
    assert result.run["archived_path"].startswith("archive/MB/")
    assert (app.config.data_dir / result.run["archived_path"]).is_file()


def test_stops_on_a_short_page_without_link_headers(app: App, fake: FakeMoneybird) -> None:
    fake.link_header = False
    seed(fake, contacts=10, per_contact=20)  # exactly 200: two full pages, then an empty third
    result = app.imports.run("MB", "schedule")
    assert result.status == "performed"
    assert result.run["counts"]["invoices_created"] == 200
    assert [p.param("page") for p in fake.requests_to("sales_invoices.json")] == ["1", "2", "3"]


@pytest.mark.parametrize(("style", "html"), [("epoch", False), ("seconds", False), ("epoch", True)])
def test_a_429_in_the_middle_is_waited_out(
    app: App, fake: FakeMoneybird, clock: FakeClock, style: str, html: bool
) -> None:
    seed(fake)
    fake.rate_limit, fake.retry_after_style, fake.html_429 = 2, style, html
    result = app.imports.run("MB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["counts"]["invoices_created"] == 250
    statuses = [p.param("page") for p in fake.requests_to("sales_invoices.json")]
    assert statuses == ["1", "2", "3", "3"]  # the third page was refused once, then fetched
    assert 290 <= clock.slept[0] <= 310  # waited for the 5-minute window, not decades, not at once
    assert all(s <= 310 for s in clock.slept)  # the PDF downloads after the poll wait for the window too


def test_a_rate_limit_beyond_the_wait_budget_fails_the_run(
    tmp_path: Path, database_url: str, fake: FakeMoneybird, clock: FakeClock
) -> None:
    seed(fake, contacts=2, per_contact=2)
    fake.rate_limit = 0
    config = admins(fake)
    config["MB"]["connector"]["max_wait_seconds"] = 60  # type: ignore[index]
    app = make_app(tmp_path, database_url, config, clock)
    try:
        result = app.imports.run("MB", "manual")
    finally:
        app.engine.dispose()
    assert result.status == "failed"
    assert "longer than max_wait_seconds" in result.run["reason"]
    assert stored_invoices(app, "MB") == {}


def test_an_access_token_that_expires_mid_poll_is_refreshed(app: App, fake: FakeMoneybird, clock: FakeClock) -> None:
    seed(fake)
    authorize(app, "MBO")
    fake.hooks[fake.data_requests + 2] = fake.revoke_access_tokens  # the second page: 401
    result = app.imports.run("MBO", "manual")
    assert result.status == "performed", result.run["reason"]
    assert result.run["counts"]["invoices_created"] == 250
    grants = [r.form()["grant_type"] for r in fake.requests_to("/oauth/token")]
    assert grants == ["authorization_code", "refresh_token"]
    assert [p.param("page") for p in fake.requests_to("sales_invoices.json")] == ["1", "2", "2", "3"]


def test_a_token_near_its_expiry_is_refreshed_before_use(app: App, fake: FakeMoneybird, clock: FakeClock) -> None:
    seed(fake)
    fake.token_lifetime = 100
    authorize(app, "MBO")
    fake.seconds_per_request = 40  # the token runs out during the poll
    result = app.imports.run("MBO", "manual")
    assert result.status == "performed", result.run["reason"]
    grants = [r.form()["grant_type"] for r in fake.requests_to("/oauth/token")]
    assert grants.count("refresh_token") >= 1
    assert not [r for r in fake.log if r.path.startswith("/api/") and r.headers.get("authorization", "") == ""]


def test_refresh_token_rotation_persists_the_new_token(app: App, fake: FakeMoneybird, clock: FakeClock) -> None:
    seed(fake, contacts=2, per_contact=2)
    authorize(app, "MBO")
    store = token_store(app, "MBO", clock)
    before = store.load()
    assert before is not None and before.refresh_token
    fake.revoke_access_tokens()
    assert app.imports.run("MBO", "manual").status == "performed"
    after = store.load()
    assert after is not None and after.refresh_token not in (None, before.refresh_token)
    old = httpx.post(
        f"{fake.base_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": before.refresh_token,
            "client_id": "mb-client",
            "client_secret": "mb-secret",
        },
    )
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    fake.revoke_access_tokens()
    assert app.imports.run("MBO", "manual").status == "performed"  # the persisted new token works


def test_tokens_are_stored_encrypted(app: App, fake: FakeMoneybird, clock: FakeClock) -> None:
    authorize(app, "MBO")
    tokens = token_store(app, "MBO", clock).load()
    assert tokens is not None
    with app.engine.connect() as conn:
        raw = " ".join(str(v) for row in conn.exec_driver_sql("SELECT * FROM connector_tokens") for v in row)
    assert tokens.access_token not in raw and str(tokens.refresh_token) not in raw


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda f: setattr(f, "personal_tokens", set()), "token is invalid"),
        (lambda f: setattr(f, "administration_id", "999"), "record not found"),
        (
            lambda f: f.faults.update(
                {1: Response(400, b'{"error":"Filter is invalid"}', {"Content-Type": "application/json"})}
            ),
            "Filter is invalid",
        ),
    ],
    ids=["401", "404", "400"],
)
def test_an_error_body_fails_the_run_with_its_text(app: App, fake: FakeMoneybird, setup, reason: str) -> None:  # type: ignore[no-untyped-def]
    seed(fake, contacts=1, per_contact=1)
    setup(fake)
    result = app.imports.run("MB", "manual")
    assert result.status == "failed"
    assert reason in result.run["reason"]
    assert "personal-token" not in result.run["reason"]


def test_an_outage_mid_poll_applies_nothing(app: App, fake: FakeMoneybird, clock: FakeClock) -> None:
    ids = seed(fake)
    assert app.imports.run("MB", "manual").status == "performed"
    before = stored_invoices(app, "MB")
    fake.pay(ids[0])
    fake.outage_from = fake.data_requests + 2  # page 1 arrives, then every request fails with 503
    result = app.imports.run("MB", "manual")
    assert result.status == "failed"
    assert "503" in result.run["reason"] and "gave up after 6 attempts" in result.run["reason"]
    assert stored_invoices(app, "MB") == before
    assert result.run["counts"]["invoices_closed"] == 0


def test_second_poll_with_changes(app: App, fake: FakeMoneybird) -> None:
    ids = seed(fake, contacts=3, per_contact=3)
    assert app.imports.run("MB", "manual").status == "performed"
    fake.pay(ids[0])  # paid: no longer in the open filter
    fake.pay(ids[1], "50.00")  # open amount 100.50 → 50.50
    new_contact = fake.add_contact("2000", "Nieuwe Klant B.V.")
    fake.add_invoice(new_contact, "N-1", "60.50")
    result = app.imports.run("MB", "schedule")
    assert result.status == "performed", result.run["reason"]
    counts = result.run["counts"]
    assert (counts["invoices_closed"], counts["invoices_created"], counts["debtors_created"]) == (1, 1, 1)
    stored = stored_invoices(app, "MB")
    assert stored["F000-00"]["status"] == "paid"
    assert Decimal(stored["F000-01"]["amount_open"]) == Decimal("50.50")
    assert stored["N-1"]["debtor"] == "2000"
    assert table_count(app, payments) == 2


# -- invoice PDFs: downloaded after the poll, stored and linked like a delivered PDF -------------------------


def test_pdfs_of_open_invoices_are_downloaded_and_linked(app: App, fake: FakeMoneybird) -> None:
    ids = seed(fake, contacts=1, per_contact=3)
    result = app.imports.run("MB", "manual")
    assert result.status == "performed", result.run["reason"]
    assert [n["code"] for n in result.run["notices"] if n["code"].startswith("documents")] == ["documents_downloaded"]
    asked = fake.requests_to("download_pdf")
    assert sorted(r.path.split("/")[-2] for r in asked) == sorted(ids)
    assert all(r.headers["authorization"] == "Bearer personal-token" for r in asked)
    files = fake.requests_to("/pdf/")
    assert len(files) == 3 and not [r for r in files if "authorization" in r.headers]  # the token stays home
    docs = stored_documents(app, "MB")
    assert sorted(docs) == ["F000-00", "F000-01", "F000-02"]
    doc = docs["F000-01"]
    assert (doc["kind"], doc["current"], doc["file"]) == ("pdf", True, "moneybird/F000-01.pdf")
    assert (app.config.data_dir / doc["archived_path"]).read_bytes() == make_pdf("Factuur F000-01")
    run = {r["run_id"]: r for r in list_runs_json(app)}[doc["run_id"]]
    assert (run["source"], run["trigger"], run["format"], run["status"]) == ("moneybird", "manual", "pdf", "performed")
    assert {i["number"]: i["documents"] for i in stored_invoices(app, "MB").values()} == {
        "F000-00": ["pdf"],
        "F000-01": ["pdf"],
        "F000-02": ["pdf"],
    }

    again = app.imports.run("MB", "schedule")  # nothing new to download: not fetched twice
    assert again.status == "performed" and not [n for n in again.run["notices"] if n["code"].startswith("documents")]
    assert len(fake.requests_to("download_pdf")) == 3


def test_pdfs_per_poll_are_bounded_newest_first_and_continued(app: App, fake: FakeMoneybird) -> None:
    contact = fake.add_contact("1000", "Klant B.V.")
    for n in range(5):
        fake.add_invoice(contact, f"A-{n}", "10.00")
    first = app.imports.run("MB", "manual")  # documents_per_poll = 3
    assert first.status == "performed"
    assert {n["code"] for n in first.run["notices"]} >= {"documents_downloaded", "documents_waiting"}
    assert len(stored_documents(app, "MB")) == 3
    second = app.imports.run("MB", "manual")
    assert [n["code"] for n in second.run["notices"] if n["code"].startswith("documents")] == ["documents_downloaded"]
    assert sorted(stored_documents(app, "MB")) == [f"A-{n}" for n in range(5)]
    assert len(fake.requests_to("download_pdf")) == 5


def test_a_failing_download_is_a_warning_and_is_tried_again_at_the_next_poll(
    app: App, fake: FakeMoneybird, clock: FakeClock
) -> None:
    ids = seed(fake, contacts=1, per_contact=3)
    fake.pdf_outage = {"F000-01"}  # its file host answers 503 (retried until the link expires, a new link too)
    fake.pdf_bodies = {"F000-02": b"<html><body>Er ging iets mis</body></html>"}  # served as if it were the PDF
    result = app.imports.run("MB", "manual")
    assert result.status == "performed", "a PDF that cannot be had never fails the import"
    assert result.run["counts"]["invoices_created"] == 3 and result.run["counts"]["warnings"] == 2
    warnings = {w["code"]: w["message"] for w in result.run["warnings"]}
    assert set(warnings) == {"document_download_failed", "document_not_stored"}
    assert "F000-01" in warnings["document_download_failed"]
    assert len(fake.requests_to(f"/pdf/{ids[1]}")) > 2  # retried on the file host
    assert len(fake.requests_to(f"{ids[1]}/download_pdf")) == 2  # and with a fresh link once it had expired
    assert "F000-02" in warnings["document_not_stored"] and "not a PDF" in warnings["document_not_stored"]
    assert all("the next poll tries again" in m for m in warnings.values())
    assert sorted(stored_documents(app, "MB")) == ["F000-00"]
    rejected = [r for r in list_runs_json(app) if r["status"] == "rejected"]
    assert [(r["file"], r["source"]) for r in rejected] == [("moneybird/F000-02.pdf", "moneybird")]

    fake.pdf_outage, fake.pdf_bodies = set(), {}
    fake.pay(ids[2])  # paid meanwhile: closed, so its PDF is no longer wanted
    clock.advance(3600)
    again = app.imports.run("MB", "schedule")
    assert again.status == "performed" and again.run["warnings"] == []
    assert sorted(stored_documents(app, "MB")) == ["F000-00", "F000-01"]
    assert [r.path.split("/")[-2] for r in fake.requests_to("download_pdf")].count(ids[2]) == 1


def test_an_expired_pdf_link_is_not_stored(app: App, fake: FakeMoneybird) -> None:
    seed(fake, contacts=1, per_contact=1)
    fake.pdf_link_seconds = -1  # every short-lived link has expired by the time it is followed
    result = app.imports.run("MB", "manual")
    assert result.status == "performed"
    assert [w["code"] for w in result.run["warnings"]] == ["document_download_failed"]
    assert (
        "403" in result.run["warnings"][0]["message"] and "Request has expired" in result.run["warnings"][0]["message"]
    )
    assert len(fake.requests_to("download_pdf")) == 2  # a fresh link was asked for once
    assert stored_documents(app, "MB") == {}


def test_no_pdfs_are_downloaded_with_documents_per_poll_zero(
    tmp_path: Path, database_url: str, fake: FakeMoneybird, clock: FakeClock
) -> None:
    seed(fake, contacts=1, per_contact=2)
    config = admins(fake)
    config["MB"]["connector"]["documents_per_poll"] = 0  # type: ignore[index]
    app = make_app(tmp_path, database_url, config, clock)
    try:
        result = app.imports.run("MB", "manual")
        assert result.status == "performed" and result.run["counts"]["invoices_created"] == 2
        assert fake.requests_to("download_pdf") == [] and stored_documents(app, "MB") == {}
    finally:
        app.engine.dispose()
