"""The parse worker: an import parsed in a second process gives exactly what an import in one process gives.

Two administrations in one database receive the same files: ACME through a pipeline that parses every
file in a worker process, BETA through one that parses in the importing process. Runs (status, counts,
problems, detected settings) and the stored invoices, debtors and payments must be equal.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import marshal
import os
import pickle
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway import parse_worker
from gateway.app import DOCUMENT_READERS, build_app
from gateway.archive import hash_stream
from gateway.config import Administration, Config, IgnoreSettings, KindSettings
from gateway.formats import parse_csv, xml_options
from gateway.instances import ProcessLease
from gateway.parse_worker import MIN_BYTES, WorkerRows, worth_a_worker
from gateway.pipeline import ParseFn, Pipeline, copy_into_claimed, stage_policy
from gateway.records import Entry, Snapshot
from gateway.stage_rows import LocalRows
from gateway.store import transaction
from gateway.tables import administrations, debtors, invoices, payments
from gateway.watcher import open_claimed
from parsers.detect import Kind
from parsers.payt_xml import parse_payt_xml
from tests.test_payt_xml import VALID as VALID_XML

HEADER = (
    "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;debtor_iban;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat;"
    "invoice_sent_at;invoice_payment_condition\n"
)
FIRST = [
    "D1;Eerste BV;Kerkstraat 1;1234 AB;Utrecht;NL91ABNA0417164300;F-1;2026-02-01;2026-03-01;100.00;100.00;;",
    "D1;Eerste BV;Kerkstraat 1;1234 AB;Utrecht;NL91ABNA0417164300;F-2;2026-02-01;2026-03-01;50.50;20.25;2026-02-02;",
    "D2;Tweede BV;Dorpsweg 2;1234 AB;Zeist;NL00ABNA0000000000;F-3;2026-02-01;2026-03-01;-12.00;-12.00;;",
    "D3;Derde BV;Laan 3;1234 AB;Baarn;;F-4;2026-02-01;2026-03-01;0.00;0.00;2026-02-03T10:15:00;",
    "D3;Derde BV;Laan 3;1234 AB;Baarn;;F-5;2026-02-01;2026-03-01;10.00;15.00;2026-02-03 08:00;",
    "D2;Tweede BV;Dorpsweg 9;1234 AB;Zeist;;F-6;2026-02-01;2026-03-01;30.00;30.00;;",  # D2 conflicts
    "D4;Vierde BV;Pad 4;1234 AB;Ede;;F-7;2026-02-01;2026-03-01;40.00;40.00;;",
    "D4;Vierde BV;Pad 4;1234 AB;Ede;;F-7;2026-02-02;2026-03-02;41.00;41.00;;",  # a duplicate number
    "D5;Vijfde BV;Weg 5;1234 AB;Ede;;F-8;31-02-2026;2026-03-01;10.00;10.00;;",  # an invalid date
    "D5;Vijfde BV;Weg 5;1234 AB;Ede;;TMP-1;2026-02-01;2026-03-01;10.00;10.00;;",  # ignored
    "D6;Zesde BV;Weg 6;1234 AB;Ede;;F-9;2026-02-01;2026-03-01;10.00;10.00;;CONTANT",  # ignored
    "D6;Zesde BV;Weg 6;1234 AB;Ede;;F-10;2026-02-01;2026-03-01;0.00;0.00;;",
    *(
        f"D{10 + i // 3};Debiteur {i // 3};Straat {i};1234 AB;Ede;;G-{i};2026-02-01;2026-03-01;{i}.50;{i}.50;;"
        for i in range(1, 40)
    ),
]
SECOND = [
    row.replace(";100.00;100.00;", ";100.00;60.00;").replace(";30.00;30.00;", ";30.00;0.00;")
    for row in FIRST
    if ";G-5;" not in row
] + ["D7;Zevende BV;Weg 7;1234 AB;Ede;;F-11;2026-02-05;2026-03-05;70.00;70.00;;"]
# Columns that differ between the two administrations by construction.
PER_ADMINISTRATION = ("id", "administration_id", "debtor_id", "created_run_id", "updated_run_id")


def admin(code: str) -> Administration:
    return Administration(
        code=code,
        name=code.title(),
        ignore=IgnoreSettings(invoices=("TMP*",), payment_conditions=("CONTANT",)),
        kinds=KindSettings(zero_amount="skip"),
    )


def parse_noting_pid(stream: BinaryIO, administration: Administration) -> Snapshot:
    """The payt-csv parser; the snapshot notes the process that parsed it."""
    snapshot = parse_csv(stream, administration)
    snapshot.detected["pid"] = str(os.getpid())
    return snapshot


def parse_noting_collector(stream: BinaryIO, administration: Administration) -> Snapshot:
    """The payt-csv parser; the snapshot notes its process's garbage collection thresholds."""
    snapshot = parse_csv(stream, administration)
    snapshot.detected["gc_threshold"] = ",".join(map(str, gc.get_threshold()))
    return snapshot


def parse_xml_beside_its_validator(stream: BinaryIO, administration: Administration) -> Snapshot:
    """payt-xml as for a large file whatever its size: the schema is checked by a validator process while the
    entries are read without it. Through a worker that is three processes. The snapshot notes the parser's."""
    options = dataclasses.replace(xml_options(administration), parallel_from_bytes=0)
    snapshot = parse_payt_xml(stream, options)
    snapshot.detected["pid"] = str(os.getpid())
    return snapshot


def parse_then_die(stream: BinaryIO, administration: Administration) -> Snapshot:
    """A parser whose process is killed after the third row (a worker killed by the OOM killer)."""
    snapshot = parse_csv(stream, administration)

    def entries() -> Iterator[Entry]:
        for n, entry in enumerate(snapshot.entries):
            if n == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            yield entry

    snapshot.entries = entries()
    return snapshot


def parse_then_fail(stream: BinaryIO, administration: Administration) -> Snapshot:
    snapshot = parse_csv(stream, administration)

    def entries() -> Iterator[Entry]:
        yield from snapshot.entries
        raise ZeroDivisionError("a bug after the last row")

    snapshot.entries = entries()
    return snapshot


class Both:
    """ACME's files are parsed by a worker, BETA's in this process; the same files go to both."""

    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        parse: ParseFn = parse_noting_pid,
        fmt: str = "payt-csv",
        ignore: IgnoreSettings | None = None,
    ):
        self.engine = engine
        administrations = {code: dataclasses.replace(admin(code), format=fmt) for code in ("ACME", "BETA")}
        if ignore is not None:
            administrations = {code: dataclasses.replace(a, ignore=ignore) for code, a in administrations.items()}
        self.config = Config(data_dir=data_dir, database_url="", administrations=administrations)
        self.now = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)
        parsers = {fmt: parse}
        clock, readers = (lambda: self.now), DOCUMENT_READERS
        self.lease = ProcessLease(data_dir)
        owner = self.lease.token
        self.worker = Pipeline(self.config, engine, parsers, open_claimed, clock, readers, owner, worker_min_bytes=0)
        self.local = Pipeline(self.config, engine, parsers, open_claimed, clock, readers, owner, worker_min_bytes=None)

    def deliver(self, tmp_path: Path, name: str, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The same file to both; ``{code}`` in ``text`` becomes the administration's code."""
        self.now += timedelta(hours=1)
        runs = []
        for code, pipeline in (("ACME", self.worker), ("BETA", self.local)):
            source = tmp_path / code / name
            source.parent.mkdir(exist_ok=True)
            source.write_text(text.replace("{code}", code), encoding="utf-8")
            delivery = copy_into_claimed(self.config, code, source, self.now, self.lease.token())
            runs.append(pipeline.process(delivery).run)
        return runs[0], runs[1]

    def stored(self, code: str) -> dict[str, list[tuple[Any, ...]]]:
        i, d, p, a = invoices, debtors, payments, administrations
        with transaction(self.engine, write=False) as conn:
            admin_id = conn.execute(sa.select(a.c.id).where(a.c.code == code)).scalar_one()
            invoice_columns = [c for c in i.c if c.name not in PER_ADMINISTRATION]
            debtor_columns = [c for c in d.c if c.name not in PER_ADMINISTRATION]
            return {
                "invoices": [
                    tuple(r)
                    for r in conn.execute(
                        sa.select(d.c.code, *invoice_columns)
                        .join(d, d.c.id == i.c.debtor_id)
                        .where(i.c.administration_id == admin_id)
                        .order_by(i.c.number)
                    )
                ],
                "debtors": [
                    tuple(r)
                    for r in conn.execute(
                        sa.select(*debtor_columns).where(d.c.administration_id == admin_id).order_by(d.c.code)
                    )
                ],
                "payments": [
                    tuple(r)
                    for r in conn.execute(
                        sa.select(i.c.number, p.c.amount_cents, p.c.paid_on)
                        .join(i, i.c.id == p.c.invoice_id)
                        .where(i.c.administration_id == admin_id)
                        .order_by(i.c.number, p.c.id)
                    )
                ],
            }


def comparable(run: dict[str, Any]) -> dict[str, Any]:
    """A run without what differs by administration: ids, names, paths, times, the parsing process, the
    hash (an XML file names its administration)."""
    detected = {k: v for k, v in run["detected"].items() if k != "pid"}
    skip = ("run_id", "administration", "archived_path", "started_at", "finished_at", "detected", "sha256")
    same = {k: v for k, v in run.items() if k not in skip} | {"detected": detected}
    return json.loads(json.dumps(same).replace("'ACME'", "'ADMIN'").replace("'BETA'", "'ADMIN'"))


def test_a_worker_import_equals_an_import_in_one_process(engine: Engine, tmp_path: Path) -> None:
    both = Both(engine, tmp_path / "data")
    for name, rows in (("first.csv", FIRST), ("second.csv", SECOND)):
        by_worker, here = both.deliver(tmp_path, name, HEADER + "\n".join(rows) + "\n")
        assert by_worker["detected"]["pid"] != str(os.getpid()), "ACME's file was parsed in another process"
        assert here["detected"]["pid"] == str(os.getpid())
        assert comparable(by_worker) == comparable(here)
        assert by_worker["status"] == "performed"
        assert both.stored("ACME") == both.stored("BETA")
    first, second = both.stored("ACME"), both.stored("BETA")
    assert first == second
    codes = {(p["code"], p["row"]) for p in by_worker["errors"] + by_worker["warnings"]}
    assert {("duplicate_invoice_number", 8), ("duplicate_invoice_number", 9), ("invalid_date", 10)} <= codes
    assert {("conflicting_debtor_data", 7), ("invalid_iban", 4), ("open_exceeds_total", 6)} <= codes
    assert by_worker["counts"]["ignored"] == 4  # TMP-1, F-9 (CONTANT), F-4 and F-10 (zero amount: skip)
    # The second file: F-11 is new, F-1 partly paid, F-6 paid, G-5 no longer there (paid).
    assert by_worker["counts"]["invoices_created"] == 1 and by_worker["counts"]["invoices_updated"] == 2
    assert by_worker["counts"]["invoices_closed"] == 2
    sent_at = 1 + [c.name for c in invoices.c if c.name not in PER_ADMINISTRATION].index("sent_at")
    sent = {row[1]: row[sent_at] for row in first["invoices"]}
    assert sent["F-2"] == datetime(2026, 2, 1, 23, 0, tzinfo=UTC)  # a date: midnight in Amsterdam
    assert sent["F-5"] == datetime(2026, 2, 3, 7, 0, tzinfo=UTC)  # a naive time: local


def test_a_worker_reading_payt_csv_column_wise_equals_an_import_in_one_process(engine: Engine, tmp_path: Path) -> None:
    """The payt-csv parser itself in the worker: without ignore lists it reads the clean blocks column-wise
    (gateway.csv_columnar), and the rows of the first file from its invalid date on (line 10) by the
    reference. Zero amounts are skipped; D2's IBAN is a warning on its rows."""
    both = Both(engine, tmp_path / "data", parse=parse_csv, ignore=IgnoreSettings())
    clean = [row for row in FIRST if ";31-02-2026;" not in row]
    for name, rows in (("clean.csv", clean), ("first.csv", FIRST), ("second.csv", SECOND)):
        by_worker, here = both.deliver(tmp_path, name, HEADER + "\n".join(rows) + "\n")
        assert comparable(by_worker) == comparable(here), name
        assert both.stored("ACME") == both.stored("BETA"), name
        assert by_worker["status"] == "performed"
    assert {(p["code"], p["row"]) for p in by_worker["warnings"]} >= {("invalid_iban", 4)}


@pytest.mark.parametrize(
    ("name", "text", "code"),
    [
        ("no-amounts.csv", "debtor_code;invoice_number\nD1;F-1\n", "missing_column"),
        ("broken-quote.csv", HEADER + "\n".join(FIRST[:5]) + '\nD9;"Negen BV;x\n', "malformed_csv"),
        ("wrong-admin.csv", "administration_code;" + HEADER + "ELSE;" + FIRST[0] + "\n", "wrong_administration"),
    ],
)
def test_file_errors_are_the_same_through_a_worker(
    engine: Engine, tmp_path: Path, name: str, text: str, code: str
) -> None:
    both = Both(engine, tmp_path / "data")
    by_worker, here = both.deliver(tmp_path, name, text)
    assert comparable(by_worker) == comparable(here)
    assert code in {p["code"] for p in by_worker["errors"]}
    assert both.stored("ACME") == both.stored("BETA")


@pytest.mark.parametrize("parse", [parse_then_die, parse_then_fail])
def test_a_failing_worker_fails_the_run_and_applies_nothing(engine: Engine, tmp_path: Path, parse: ParseFn) -> None:
    both = Both(engine, tmp_path / "data", parse)
    source = tmp_path / "first.csv"
    source.write_text(HEADER + "\n".join(FIRST) + "\n", encoding="utf-8")
    delivery = copy_into_claimed(both.config, "ACME", source, both.now, both.lease.token())
    run = both.worker.process(delivery).run
    assert run["status"] == "failed"
    assert run["errors"][0]["code"] == "internal_error"
    assert both.stored("ACME") == {"invoices": [], "debtors": [], "payments": []}
    kept = tmp_path / "data" / run["archived_path"]
    assert kept.read_bytes() == source.read_bytes(), "the file is kept for a retry"


def test_a_worker_is_used_only_for_large_real_files_and_module_level_parsers(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"x" * 1000)
    with path.open("rb") as stream:
        assert worth_a_worker(stream, parse_csv, 1000) is ((os.cpu_count() or 1) > 1)
        assert not worth_a_worker(stream, parse_csv, 1001)
        assert not worth_a_worker(stream, parse_csv, None)
        assert not worth_a_worker(stream, lambda s, a: parse_csv(s, a), 0), "a lambda cannot be sent to a worker"


def test_the_composition_root_uses_a_worker_with_sqlite_only(engine: Engine, tmp_path: Path) -> None:
    url = engine.url.render_as_string(hide_password=False)
    app = build_app(Config(data_dir=tmp_path, database_url=url), run_migrations=False)
    try:
        assert app.pipeline.worker_min_bytes == (MIN_BYTES if engine.dialect.name == "sqlite" else None)
    finally:
        app.engine.dispose()


XML_CASES = {
    "valid": VALID_XML,
    "row problems": VALID_XML.replace("<DueDate>2026-03-30</DueDate>", "<DueDate>2026-02-01</DueDate>").replace(
        "<Iban>NL91ABNA0417164300</Iban>", "<Iban>NL00ABNA0417164300</Iban>"
    ),
    "schema violation": VALID_XML.replace("<City>Zeist</City>", ""),
    "duplicate number": VALID_XML.replace('number="2026-0044"', 'number="2026-0042"'),
    "not well-formed": VALID_XML.replace("</Invoice>\n  </Debtor>", "</Invoice>\n  </Debtr>", 1),
}


@pytest.mark.parametrize("case", XML_CASES)
def test_payt_xml_through_a_worker_and_its_validator_equals_one_process(
    engine: Engine, tmp_path: Path, case: str
) -> None:
    both = Both(engine, tmp_path / "data", parse_xml_beside_its_validator, fmt="payt-xml")
    text = XML_CASES[case].replace('administrationCode="ACME"', 'administrationCode="{code}"')
    by_worker, here = both.deliver(tmp_path, "open-items.xml", text)
    assert by_worker["detected"].get("pid", "") != str(os.getpid())
    assert comparable(by_worker) == comparable(here)
    assert both.stored("ACME") == both.stored("BETA")
    expected = "performed" if case in ("valid", "row problems") else "rejected"
    assert by_worker["status"] == expected, by_worker
    if expected == "performed":
        assert by_worker["detected"]["validation"] == "parallel"
        assert by_worker["counts"]["invoices_created"] == 2 + (case == "valid")


def test_the_worker_reads_at_its_own_offset_while_this_process_reads_the_file(tmp_path: Path) -> None:
    """The pipeline starts a large file's worker and then hashes and sniffs the same open file: the worker
    must get every row whatever this process does with the descriptor they share."""
    path = tmp_path / "large.csv"
    rows = (
        f"D{i // 3};Debiteur {i // 3};Straat {i};1234 AB;Ede;;G-{i};2026-02-01;2026-03-01;{i}.50;{i}.50;;"
        for i in range(30_000)
    )
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    administration = admin("ACME")
    policy = stage_policy(administration)
    with path.open("rb") as stream:
        local = LocalRows(parse_csv(stream, administration), policy, True)
        expected = [row for batch in local.batches() for row in batch[0]]
    assert len(expected) == 30_000
    with open_claimed(path) as stream, WorkerRows(stream, parse_csv, administration, policy, True) as worker:
        assert hash_stream(stream)[1] == path.stat().st_size  # reads to the end, then rewinds
        assert worker.snapshot.detected["delimiter"] == ";"  # the worker has begun reading the rows
        stream.seek(len(HEADER) + 12_345)
        stream.read(1000)
        got = [row for batch in worker.batches() for row in batch[0]]
    assert got == expected


def test_the_worker_collects_garbage_less_often_than_this_process(tmp_path: Path) -> None:
    """The worker raises its young generation's threshold (``GC_THRESHOLD``): it is an import's critical path on
    a fast machine, and the default made ~1,000 collections per 1M rows. The importing process keeps its own."""
    path = tmp_path / "small.csv"
    path.write_text(HEADER + FIRST[0] + "\n", encoding="utf-8")
    administration = admin("ACME")
    ours = gc.get_threshold()
    policy = stage_policy(administration)
    with path.open("rb") as stream, WorkerRows(stream, parse_noting_collector, administration, policy, True) as worker:
        threshold = worker.snapshot.detected["gc_threshold"]
        numbers, while_reading = [], []
        for batch in worker.batches():
            numbers.extend(row[2] for row in batch[0])
            while_reading.append(gc.get_threshold())
        assert numbers == ["F-1"]
    assert threshold == ",".join(map(str, parse_worker.GC_THRESHOLD))
    assert parse_worker.GC_THRESHOLD[0] > ours[0]
    # While this process reads the frames it collects as rarely as the worker; afterwards as before.
    assert while_reading == [(parse_worker.GC_THRESHOLD[0], *ours[1:])]
    assert gc.get_threshold() == ours


def test_overlapping_readers_restore_the_threshold_when_the_last_is_done() -> None:
    ours = gc.get_threshold()
    raised = (parse_worker.GC_THRESHOLD[0], *ours[1:])
    first, second = parse_worker.fewer_collections(), parse_worker.fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == raised  # the second reader is still at it
    second.__exit__(None, None, None)
    assert gc.get_threshold() == ours
    with pytest.raises(ZeroDivisionError), parse_worker.fewer_collections():
        assert gc.get_threshold() == raised
        _ = 1 / 0
    assert gc.get_threshold() == ours


def test_a_reader_that_stops_early_restores_the_threshold(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text(HEADER + "\n".join(FIRST) + "\n", encoding="utf-8")
    administration = admin("ACME")
    ours = gc.get_threshold()
    with (
        path.open("rb") as stream,
        WorkerRows(stream, parse_csv, administration, stage_policy(administration), True) as w,
    ):
        batches = w.batches()
        next(batches)
        assert gc.get_threshold()[0] == parse_worker.GC_THRESHOLD[0]
        batches.close()
    assert gc.get_threshold() == ours


def children() -> set[int]:
    return {int(pid) for pid in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()}


def test_a_large_duplicate_stops_the_worker_started_for_it(engine: Engine, tmp_path: Path) -> None:
    """A worker is started before the file is hashed; when the hash shows a duplicate it was not needed and
    must not be left running (nor as a zombie)."""
    both = Both(engine, tmp_path / "data")
    source = tmp_path / "first.csv"
    source.write_text(HEADER + "\n".join(FIRST) + "\n", encoding="utf-8")
    before = children()
    runs = []
    for _ in range(2):
        delivery = copy_into_claimed(both.config, "ACME", source, both.now, both.lease.token())
        runs.append(both.worker.process(delivery).run)
    assert [run["status"] for run in runs] == ["performed", "duplicate"]
    assert runs[0]["detected"]["pid"] != str(os.getpid()), "the first was parsed by a worker"
    assert children() == before


def frames(data: bytes) -> Iterator[tuple[Any, ...]]:
    """The frames a worker wrote (``parse_worker._send``)."""
    at = 0
    while at < len(data):
        encoding, size = parse_worker.HEADER.unpack_from(data, at)
        at += parse_worker.HEADER.size
        payload = data[at : at + size]
        at += size
        yield marshal.loads(payload) if encoding == b"M" else pickle.loads(payload)


def test_without_proc_no_worker_starts_early_and_a_worker_reads_its_inherited_descriptor(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc/self/fd is missing a worker cannot read at an offset of its own: none is started before the
    file is hashed, and a worker (started once this process has done reading) reads the inherited one."""
    monkeypatch.setattr(parse_worker, "PROC_FDS", str(tmp_path / "no-proc"))
    both = Both(engine, tmp_path / "data")
    source = tmp_path / "first.csv"
    source.write_text(HEADER + "\n".join(FIRST) + "\n", encoding="utf-8")
    administration = both.config.administrations["ACME"]
    delivery = copy_into_claimed(both.config, "ACME", source, both.now, both.lease.token())
    with open_claimed(delivery.path) as stream:
        with both.worker._early_rows(delivery, administration, stream, Kind.PAYT_CSV) as early:
            assert early is None
        out = io.BytesIO()
        job = parse_worker.Job(
            parse_csv, administration, stage_policy(administration), True, os.dup(stream.fileno()), 0
        )
        parse_worker.run(job, out)
    sent = list(frames(out.getvalue()))
    assert [frame[0] for frame in sent] == ["start", "batch", "end"]
    with source.open("rb") as stream:
        local = LocalRows(parse_csv(stream, administration), stage_policy(administration), True)
        assert sent[1][1] == [row for batch in local.batches() for row in batch[0]]
    monkeypatch.undo()
    with (
        open_claimed(delivery.path) as stream,
        both.worker._early_rows(delivery, administration, stream, Kind.PAYT_CSV) as early,
    ):
        assert early is not None, "with /proc the worker starts early"


def test_the_worker_writes_its_frames_from_a_thread_and_reports_a_write_error() -> None:
    """Frames leave in order; the worker may have FRAMES_AHEAD ready while the parent has taken none; once the
    parent is gone, the next write or the flush raises the pipe's error (the worker then exits)."""
    read_end, write_end = os.pipe()
    writer = parse_worker.FrameWriter(os.fdopen(write_end, "wb", buffering=0))
    for n in range(parse_worker.FRAMES_AHEAD):  # none read yet: only the first may be in the pipe
        parse_worker._send(writer, ("batch", [(n, "x" * 100_000)], []))
    with os.fdopen(read_end, "rb") as pipe:
        frames = []
        for _ in range(parse_worker.FRAMES_AHEAD):
            encoding, size = parse_worker.HEADER.unpack(pipe.read(parse_worker.HEADER.size))
            assert encoding == b"M"
            frames.append(marshal.loads(pipe.read(size)))
    assert [f[1][0][0] for f in frames] == list(range(parse_worker.FRAMES_AHEAD))
    with pytest.raises(BrokenPipeError):  # the read end is closed
        for _ in range(3):
            parse_worker._send(writer, ("batch", [(0, "x" * 100_000)], []))
        writer.flush()
