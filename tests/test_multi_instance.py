"""Three gateways on one PostgreSQL database and one data folder: 500+ files each imported once, 5,000 invoices
and 5,000 reminders each sent once, SFTP on every instance, the sender's slot pass run once across them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.fleet import (
    IMPORT_AT,
    INVOICES_DUE_AT,
    REMINDERS_DUE_AT,
    Drop,
    Instance,
    check_imported_once,
    check_sent_once,
    codes,
    drop,
    files_under,
    make_pdf,
    pg_schema,
    query,
    received_message_ids,
    smtp_section,
    workload,
    write_config,
)
from tests.polling import poll_until
from tests.sftp_support import paramiko_client
from tests.smtp_server import Recorder, start

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(600)]

ADMINS = codes(20)
INVOICES_EACH = 250  # 5,000 invoices
PDFS_EACH = 24  # 20 x (1 + 24) = 500 files
COPIES = 10  # and 10 PDFs delivered twice under another name


GATEWAY = [sys.executable, "-m", "gateway"]
ADD_ARGS = ["--administration", "A00", "--password-stdin"]


def message_ids(recorder: Recorder) -> Counter[str]:
    with recorder.lock:
        return received_message_ids(list(recorder.accepted))


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    poll_until(predicate, timeout, lambda: f"timed out waiting for {what}", interval=0.25)


def test_three_instances_import_and_send_each_exactly_once(tmp_path: Path) -> None:
    recorder = Recorder()
    smtp = start(recorder)
    data = tmp_path / "data"
    try:
        with pg_schema() as url:
            configs = [
                write_config(tmp_path / f"gw{i}", data, url, ADMINS, sftp=True, extra=smtp_section(smtp.port))
                for i in range(3)
            ]
            run_three(configs, url, data, recorder)
    finally:
        smtp.stop()


def run_three(configs: list[Path], url: str, data: Path, recorder: Recorder) -> None:
    # An SFTP account in the shared database, usable on every instance.
    subprocess.run(
        [*GATEWAY, "--config", str(configs[0]), "sftp-user", "add", "uploader", *ADD_ARGS],
        input="a long enough password\n",
        text=True,
        check=True,
        capture_output=True,
    )

    # 1. Three instances start together on a fresh schema (their migrations take turns), then 510 files at once.
    fleet = [Instance(c, f"import{i}", now=IMPORT_AT) for i, c in enumerate(configs)]
    try:
        ports = [int(g.wait_for(lambda g=g: g.events("sftp_started"))[0]["port"]) for g in fleet]
        for g in fleet:
            g.started()
        drops = workload(ADMINS, INVOICES_EACH, PDFS_EACH, copies=COPIES)
        assert len([d for d in drops if not d.name.startswith("kopie")]) == 500
        for item in drops:
            drop(data, item)
        for i, port in enumerate(ports):  # one upload through each instance's own SFTP server
            name = f"A00-{i:05d} via sftp {i}.pdf"
            content = make_pdf(f"uploaded through instance {i}")
            client, sftp = paramiko_client(port, "uploader", password="a long enough password")
            try:
                with sftp.open(name, "wb") as f:
                    f.write(content)
            finally:
                sftp.close()
                client.close()
            drops.append(Drop("A00", name, content))

        def all_finished() -> bool:
            done = query(url, "SELECT count(*) FROM import_runs WHERE status <> 'in_progress'")[0][0]
            return bool(done >= len(drops)) and not files_under(data / "claimed")

        wait_until(all_finished, 300, "every file to be processed")
        # A run is committed (and its file archived) a moment before its file_processed line is logged.
        wait_until(lambda: sum(len(g.events("file_processed")) for g in fleet) >= len(drops), 30, "every log line")
        per_instance = [len(g.events("file_processed")) for g in fleet]
        assert sum(per_instance) == len(drops), per_instance
        assert all(n > 0 for n in per_instance), f"every instance took files: {per_instance}"
    finally:
        codes_ = [g.stop() for g in fleet]
    assert codes_ == [0, 0, 0]
    check_imported_once(url, data, drops)
    assert query(url, "SELECT count(*) FROM invoices WHERE status = 'open'")[0][0] == 5_000
    linked = query(url, "SELECT count(*) FROM documents WHERE invoice_id IS NOT NULL")[0][0]
    assert linked == len(ADMINS) * PDFS_EACH + 3, "every PDF linked to its invoice, whichever came first"

    # 2. The invoices' slot: three daemons start at once; the slot's pass runs once, on one of them.
    fleet = [Instance(c, f"send{i}", now=INVOICES_DUE_AT) for i, c in enumerate(configs)]
    try:
        for g in fleet:
            g.wait_for(lambda g=g: g.events("send_pass_finished") or g.events("send_pass_skipped"), timeout=300)
        passes = [e for g in fleet for e in g.events("send_pass_finished")]
        skipped = [e for g in fleet for e in g.events("send_pass_skipped")]
    finally:
        codes_ = [g.stop() for g in fleet]
    assert codes_ == [0, 0, 0]
    assert [p["sent"] for p in passes] == [5_000], (passes, skipped)
    assert len(skipped) == 2
    check_sent_once(url, 5_000, "invoice")
    ids = message_ids(recorder)
    assert len(ids) == 5_000 and set(ids.values()) == {1}, "each invoice message received once"

    # 3. The reminders: three passes at the same moment (`send-due`, no slot lock): they contend for the same
    # invoices (FOR UPDATE SKIP LOCKED, the unique key) and still send each reminder once.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(c), "--now", REMINDERS_DUE_AT, "--json", "send-due"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for c in configs
    ]
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=400)
        assert p.returncode == 0
        reports.append(json.loads(out))
    sent = [r["sent"] for r in reports]
    assert sum(sent) == 5_000, reports
    assert sum(1 for n in sent if n > 0) >= 2, f"the passes really ran side by side: {sent}"
    check_sent_once(url, 5_000, "reminder")
    ids = message_ids(recorder)
    assert len(ids) == 10_000 and set(ids.values()) == {1}, "no message received twice"
