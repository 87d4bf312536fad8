"""End to end: ``payt-gateway run`` as a subprocess in a temporary folder; files dropped into its inbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.polling import poll_until

pytestmark = pytest.mark.e2e

HEADER = (
    "debiteurnummer;naam;adres;postcode;plaats;land;e-mail;factuurnummer;factuurdatum;vervaldatum;"
    "factuurbedrag;openstaand\n"
)


def csv_rows(*rows: str) -> bytes:
    return (HEADER + "".join(r + "\n" for r in rows)).encode("utf-8")


VALID = csv_rows(
    "10045;Voorbeeld B.V.;Kerkstraat 1;1234 AB;Utrecht;NL;facturen@voorbeeld.nl;2026-0042;28-02-2026;30-03-2026;"
    "1.210,00;610,00",
    "10046;Jansen;Dorpsweg 2;2345 BC;Zeist;NL;;2026-0043;2026-03-01;2026-03-31;99,95;99,95",
)
INVALID = csv_rows(
    "10045;Voorbeeld B.V.;Kerkstraat 1;1234 AB;Utrecht;NL;;2026-0050;28-02-2026;01-02-2026;10,00;10,00",
    "10047;Pietersen;Laan 3;3456 CD;;NL;;2026-0051;2026-03-01;2026-03-31;10,00;10,00",
)


def write_config(root: Path, settle: float = 0.3, extra: str = "") -> Path:
    config = root / "gateway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "."
database_url = "sqlite:///gateway.db"
settle_seconds = {settle}
sweep_seconds = 5

[administrations.ACME]
name = "Acme B.V."
import_mode = "on_delivery"
{extra}""",
        "utf-8",
    )
    return config


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli_json(config: Path, *args: str) -> Any:
    done = cli(config, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Daemon:
    """The daemon as a subprocess; its stdout (JSON log lines) collected by a reader thread."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, options: tuple[str, ...] = ()):
        """``options``: global options before ``run`` (``--now``)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), *options, "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=config.parent,
            env=None if env is None else {**os.environ, **env},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        return poll_until(
            predicate,
            timeout,
            lambda: "timed out; daemon output:\n" + "".join(self.lines),
            interval=0.05,
            alive=self._alive,
        )

    def _alive(self) -> None:
        assert self.proc.poll() is None, "daemon died:\n" + "".join(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        self.reader.join(timeout=5)
        return code


def started(config: Path) -> Iterator[tuple[Daemon, Path]]:
    """A daemon that watches its inbox; killed afterwards if a test left it running."""
    d = Daemon(config)
    d.wait_for(lambda: d.events("inbox_watch_started"))
    yield d, config
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    yield from started(write_config(tmp_path))


def drop_by_rename(inbox: Path, name: str, data: bytes) -> None:
    temp = inbox / f".{name}.part"
    temp.write_bytes(data)
    os.rename(temp, inbox / name)


def processed(d: Daemon, name: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: [e for e in d.events("file_processed") if e["file"] == name]


def test_drop_valid_invalid_duplicate_and_stop(daemon: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, config = daemon
    inbox = tmp_path / "inbox" / "ACME"

    started = time.monotonic()
    drop_by_rename(inbox, "open-items.csv", VALID)
    event = d.wait_for(processed(d, "open-items.csv"))[0]
    assert time.monotonic() - started < 2.0, "a file renamed into place is imported within two seconds"
    assert event["outcome"] == "performed" and event["counts"]["invoices_created"] == 2
    assert len(event["sha256"]) == 64 and event["duration_ms"] >= 0

    # Written slowly in pieces under its final name: taken only after it has been quiet.
    with (inbox / "slow.csv").open("wb") as f:
        for piece in (INVALID[:60], INVALID[60:120], INVALID[120:]):
            f.write(piece)
            f.flush()
            time.sleep(0.2)
    event = d.wait_for(processed(d, "slow.csv"))[0]
    assert event["outcome"] == "performed", "row errors do not reject the file"

    drop_by_rename(inbox, "again.csv", VALID)
    event = d.wait_for(processed(d, "again.csv"))[0]
    assert event["outcome"] == "duplicate"

    drop_by_rename(inbox, "broken.csv", b"this is not;a payt csv\n1;2\n")
    event = d.wait_for(processed(d, "broken.csv"))[0]
    assert event["outcome"] == "rejected"

    runs = cli_json(config, "imports")
    by_file = {r["file"]: r for r in runs}
    assert by_file["open-items.csv"]["status"] == "performed"
    assert by_file["again.csv"]["status"] == "duplicate"
    slow = by_file["slow.csv"]
    assert sorted((e["row"], e["column"], e["code"]) for e in slow["errors"]) == [
        (2, "invoice_due_date", "due_before_invoice_date"),
        (3, "debtor_post_city", "required"),
    ]
    rejected = by_file["broken.csv"]
    assert rejected["status"] == "rejected" and "rejected" in rejected["archived_path"]
    report = tmp_path / f"{rejected['archived_path']}.errors.txt"
    assert "debtor_code" in report.read_text("utf-8")
    assert json.loads((tmp_path / f"{rejected['archived_path']}.errors.json").read_text("utf-8"))["errors"]
    for run in runs:
        assert (tmp_path / run["archived_path"]).is_file(), run
        assert "ACME" in run["archived_path"] and run["sha256"] in run["archived_path"]
    assert not any(inbox.iterdir()), "every file left the inbox"

    # slow.csv is the newer full snapshot: the first file's invoices are missing from it, so they are paid.
    invoices = cli_json(config, "invoices", "--status", "all")
    assert {(i["number"], i["status"]) for i in invoices} == {("2026-0042", "paid"), ("2026-0043", "paid")}

    assert d.stop() == 0
    assert d.events("gateway_stopped")


def test_unknown_administration_folder_is_left_alone(daemon: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, _ = daemon
    stray = tmp_path / "inbox" / "NOPE"
    stray.mkdir(parents=True)
    drop_by_rename(stray, "x.csv", VALID)
    d.wait_for(lambda: d.events("inbox_unknown_administration"))
    assert (stray / "x.csv").exists()
    assert d.stop() == 0


def test_files_dropped_while_stopped_are_swept_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    inbox = tmp_path / "inbox" / "ACME"
    inbox.mkdir(parents=True)
    (inbox / "early.csv").write_bytes(VALID)
    d = Daemon(config)
    try:
        event = d.wait_for(processed(d, "early.csv"))[0]
        assert event["outcome"] == "performed"
    finally:
        assert d.stop() == 0


def test_bad_configuration_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nsettle_seconds = "soon"\n[administrations.A]\nformat = "pdf"\n', "utf-8")
    done = cli(config, "run")
    assert done.returncode == 78
    assert "gateway.settle_seconds" in done.stderr and "administrations.A.format" in done.stderr
    assert cli(config, "check-config").returncode == 78
