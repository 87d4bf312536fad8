"""The operator commands, run in-process on a real data folder and SQLite database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main

HEADER = (
    "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)


def csv_file(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows), "utf-8")
    return path


def rows(n: int, open_amount: str = "10.00", start: int = 0) -> list[str]:
    return [
        f"D{i % 5};Debtor {i % 5};Straat 1;1234 AB;Utrecht;INV{i};2026-02-01;2026-03-01;10.00;{open_amount}"
        for i in range(start, start + n)
    ]


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    """A data folder with one administration, on SQLite and on PostgreSQL."""
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[gateway]\ndata_dir = "."\ndatabase_url = "{database_url}"\n[administrations.ACME]\nname = "Acme"\n',
        "utf-8",
    )
    return cfg


class Cli:
    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]):
        self.config = config
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> Any:
        self.capsys.readouterr()
        got = main(["--config", str(self.config), "--json", *args])
        out = self.capsys.readouterr()
        assert got == code, out.err
        return json.loads(out.out) if out.out.strip() else None

    def text(self, *args: str) -> str:
        self.capsys.readouterr()
        assert main(["--config", str(self.config), *args]) == 0
        return self.capsys.readouterr().out


@pytest.fixture
def cli(config: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(config, capsys)


def test_validate_reports_every_problem_without_a_database(cli: Cli, tmp_path: Path) -> None:
    bad = csv_file(
        tmp_path / "bad.csv",
        [
            "D1;Debtor;Straat 1;1234 AB;Utrecht;INV1;2026-02-01;2026-01-01;10.00;10.00",
            "D2;Debtor;Straat 1;1234 AB;;INV2;2026-02-01;2026-03-01;10.00;10.00",
            "D3;Debtor;Straat 1;1234 AB;Utrecht;INV3;2026-02-01;2026-03-01;10.00;10.00",
            "D3;Debtor;Straat 1;1234 AB;Utrecht;INV3;2026-02-01;2026-03-01;10.00;10.00",
        ],
    )
    result = cli("validate", str(bad), "--administration", "ACME", code=1)
    assert result["valid"] is False and result["rows"] == 4 and result["format"] == "payt-csv"
    assert result["detected"]["delimiter"] == ";"
    assert sorted((e["row"], e["column"], e["code"]) for e in result["errors"]) == [
        (2, "invoice_due_date", "due_before_invoice_date"),
        (3, "debtor_post_city", "required"),
        (4, "invoice_number", "duplicate_invoice_number"),
        (5, "invoice_number", "duplicate_invoice_number"),
    ]
    assert not (tmp_path / "gateway.db").exists(), "validate never touches the database"
    assert not (tmp_path / "archive").exists() and not (tmp_path / "claimed").exists()
    good = csv_file(tmp_path / "good.csv", rows(3))
    assert cli("validate", str(good))["valid"] is True


def test_ingest_duplicate_imports_and_invoices(cli: Cli, tmp_path: Path) -> None:
    source = csv_file(tmp_path / "first.csv", rows(3))
    run = cli("ingest", str(source), "--administration", "ACME")
    assert run["status"] == "performed" and run["counts"]["invoices_created"] == 3
    assert (tmp_path / run["archived_path"]).read_bytes() == source.read_bytes()
    assert source.exists(), "ingest copies; the operator's file stays"
    again = cli("ingest", str(source), "--administration", "ACME", code=1)
    assert again["status"] == "duplicate" and "duplicate" in again["archived_path"]
    listed = cli("imports", "--administration", "ACME")
    assert [r["status"] for r in listed] == ["duplicate", "performed"]
    invoices = cli("invoices")
    assert [i["number"] for i in invoices] == ["INV0", "INV1", "INV2"]
    assert invoices[0]["amount_open"] == "10.00" and invoices[0]["next_send"] is None
    table = cli.text("imports")
    assert "performed" in table and all(len(line) <= 80 for line in table.splitlines())


def test_rejected_show_and_retry(cli: Cli, tmp_path: Path, config: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text("factuurnummer;bedrag\nINV1;10\n", "utf-8")
    run = cli("ingest", str(broken), "--administration", "ACME", code=1)
    assert run["status"] == "rejected" and run["errors"][0]["row"] is None
    listed = cli("rejected")
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    shown = cli("rejected", "show", str(run["run_id"]))
    assert shown["errors"] == run["errors"]
    # The stored file is retried as it is: still rejected, and a new run says so.
    retried = cli("rejected", "retry", str(run["run_id"]), code=1)
    assert retried["status"] == "rejected" and retried["run_id"] != run["run_id"] and retried["trigger"] == "retry"


def test_held_run_release_and_discard(cli: Cli, tmp_path: Path) -> None:
    cli("ingest", str(csv_file(tmp_path / "a.csv", rows(40))), "--administration", "ACME")
    held = cli("ingest", str(csv_file(tmp_path / "b.csv", rows(5))), "--administration", "ACME", code=1)
    assert held["status"] == "held" and "drop guard" in held["reason"]
    assert len(cli("invoices")) == 40, "a held run changes nothing"
    released = cli("release", str(held["run_id"]))
    assert released["status"] == "performed" and released["counts"]["invoices_closed"] == 35
    assert len(cli("invoices")) == 5
    # A second held run that is discarded; releasing it afterwards is refused.
    held = cli("ingest", str(csv_file(tmp_path / "c.csv", [])), "--administration", "ACME", code=1)
    assert held["status"] == "held" and held["reason"].startswith("empty file")
    assert cli("discard", str(held["run_id"]))["status"] == "discarded"
    cli("release", str(held["run_id"]), code=1)
    assert len(cli("invoices")) == 5


def test_release_of_an_older_snapshot_is_refused(cli: Cli, tmp_path: Path) -> None:
    cli("ingest", str(csv_file(tmp_path / "a.csv", rows(40))), "--administration", "ACME")
    held = cli("ingest", str(csv_file(tmp_path / "b.csv", rows(5))), "--administration", "ACME", code=1)
    cli("ingest", str(csv_file(tmp_path / "c.csv", rows(40, open_amount="5.00"))), "--administration", "ACME")
    cli("release", str(held["run_id"]), code=1)
    assert cli("discard", str(held["run_id"]))["status"] == "discarded", "what the refusal advises must work"


def test_unknown_administration_and_bad_now(cli: Cli, tmp_path: Path) -> None:
    source = csv_file(tmp_path / "x.csv", rows(1))
    cli("ingest", str(source), "--administration", "NOPE", code=78)
    cli("--now", "yesterday", "imports", code=2)


def test_now_sets_the_run_time(cli: Cli, tmp_path: Path) -> None:
    source = csv_file(tmp_path / "x.csv", rows(1))
    run = cli("--now", "2026-03-04T15:01:00", "ingest", str(source), "--administration", "ACME")
    assert run["started_at"] == "2026-03-04T14:01:00+00:00"
    assert "/2026/03/04/" in run["archived_path"]


def test_check_config(cli: Cli) -> None:
    assert cli("check-config")["administrations"] == ["ACME"]
