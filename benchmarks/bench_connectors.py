"""Poll N open invoices from each fake vendor (real page sizes, rate limit off) and report invoices/s and
the number of requests: once the fetch alone (the connector), once the whole poll into SQLite.

    .venv/bin/python benchmarks/bench_connectors.py [--invoices 10000]

Run from the repository root (it imports the fakes from tests/fakes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.connector_support import SECRET_KEY, authorize, make_app
from tests.fakes.base import FakeClock, FakeServer
from tests.fakes.eboekhouden import FakeEBoekhouden
from tests.fakes.exact import FakeExact
from tests.fakes.moneybird import FakeMoneybird
from tests.fakes.twinfield import FakeTwinfield

PER_DEBTOR = 4


def seed_moneybird(fake: FakeMoneybird, n: int) -> None:
    fake.rate_limit = None
    contact = ""
    for i in range(n):
        if i % PER_DEBTOR == 0:
            contact = fake.add_contact(str(10000 + i // PER_DEBTOR), f"Klant {i // PER_DEBTOR} B.V.")
        fake.add_invoice(contact, f"2026-{i:06d}", "121.00", "100.00")


def seed_exact(fake: FakeExact, n: int) -> None:
    fake.minutely_limit = None
    account = ""
    for i in range(n):
        if i % PER_DEBTOR == 0:
            account = fake.add_account(str(i // PER_DEBTOR + 1), f"Klant {i // PER_DEBTOR} B.V.")
            fake.add_bank_account(account, "NL91ABNA0417164300")
        fake.add_invoice(account, 30000000 + i, 121.0, 100.0)


def seed_twinfield(fake: FakeTwinfield, n: int) -> None:
    fake.credits_per_minute = None
    code = ""
    for i in range(n):
        if i % PER_DEBTOR == 0:
            code = fake.add_debtor(str(10000 + i // PER_DEBTOR), f"Klant {i // PER_DEBTOR} B.V.")
        fake.add_invoice(code, f"2026-{i:06d}", "121.00", "100.00")


def seed_eboekhouden(fake: FakeEBoekhouden, n: int) -> None:
    code = ""
    start = date(2025, 1, 1)
    for i in range(n):
        if i % PER_DEBTOR == 0:
            code = fake.add_relatie(f"R{i // PER_DEBTOR:05d}", f"Klant {i // PER_DEBTOR} B.V.")
        fake.add_invoice(code, f"F{i:06d}", "121", "21", invoice_date=start + timedelta(days=i % 365))


def measure(name: str, fake: FakeServer, admin: dict[str, object], n: int, oauth: bool, code: str = "B") -> None:
    clock = fake.clock
    assert isinstance(clock, FakeClock)
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp), "sqlite:///gateway.db", {code: admin}, clock)
        if oauth:
            authorize(app, code)
        connector = app.connectors(app.config.administrations[code])
        before = len(fake.log)
        started = time.perf_counter()
        snapshot = connector.fetch_snapshot()
        fetch = time.perf_counter() - started
        connector.close()
        fetch_requests = len(fake.log) - before
        rows = len(list(snapshot.entries))
        started = time.perf_counter()
        result = app.imports.run(code, "manual")
        poll = time.perf_counter() - started
        app.engine.dispose()
    assert result.status == "performed" and rows == n, result.run["reason"]
    print(
        f"{name:13} {n:>7} invoices  fetch {fetch:6.2f} s ({n / fetch:8.0f} invoices/s, {fetch_requests} requests)"
        f"  full poll into SQLite {poll:6.2f} s ({n / poll:8.0f} invoices/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=10_000)
    n = parser.parse_args().invoices
    os.environ.update(
        {
            "PAYT_GATEWAY_B_TOKEN": "personal-token",
            "PAYT_GATEWAY_B_CLIENT_SECRET": "exact-secret",
            "PAYT_GATEWAY_T_CLIENT_SECRET": "twf-secret",
            "PAYT_GATEWAY_E_SECURITY_CODE_1": "CODE1-abc",
            "PAYT_GATEWAY_E_SECURITY_CODE_2": "CODE2-DEF",
            "PAYT_GATEWAY_SECRET_KEY": SECRET_KEY,
        }
    )
    with FakeMoneybird(FakeClock()) as mb:
        seed_moneybird(mb, n)
        admin = {
            "name": "B",
            "source": "moneybird",
            "connector": {
                "base_url": f"{mb.base_url}/api/v2",
                "administration_id": mb.administration_id,
                "documents_per_poll": 0,  # the snapshot is measured, not the (bounded) PDF downloads after it
            },
        }
        measure("Moneybird", mb, admin, n, oauth=False)
    with FakeExact(FakeClock()) as ex:
        seed_exact(ex, n)
        admin = {
            "name": "B",
            "source": "exact_online",
            "connector": {"base_url": ex.base_url, "division": ex.division, "client_id": "exact-client"},
        }
        measure("Exact Online", ex, admin, n, oauth=True)
    with FakeTwinfield(FakeClock()) as tw:
        seed_twinfield(tw, n)
        connector = {"login_url": tw.base_url, "company_code": tw.company, "client_id": "twf-client"}
        measure("Twinfield", tw, {"name": "T", "source": "twinfield", "connector": connector}, n, oauth=True, code="T")
    with FakeEBoekhouden(FakeClock()) as eb:
        seed_eboekhouden(eb, n)
        connector = {"soap_url": eb.soap_url, "username": "demo"}
        admin = {"name": "E", "source": "eboekhouden", "connector": connector}
        measure("e-Boekhouden", eb, admin, n, oauth=False, code="E")


if __name__ == "__main__":
    main()
