"""Hostile XML (FORMATS.md §5): each case is a file error within a second and in bounded memory, nothing is
fetched, and no report contains what an entity pointed at. Through the parser, ``validate`` (a subprocess,
for its peak memory), ``ingest`` and the running daemon."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from gateway.cli import main
from gateway.errors import RejectFile
from parsers import schema_stream
from parsers.payt_xml import XmlOptions, parse_payt_xml
from parsers.payt_xml_schema import stream_xsd

SECRET = "TOP-SECRET-0f3c9a"
ROOT_OPEN = '<OpenItems xmlns="urn:payt-gateway:open-items:1" administrationCode="ACME">'
DEBTOR = (
    '<Debtor code="{code}"><LastName>X</LastName><Address><Street1>s</Street1><PostalCode>1</PostalCode>'
    "<City>c</City></Address>"
    '<Invoice number="1"><InvoiceDate>2026-02-01</InvoiceDate><DueDate>2026-03-01</DueDate>'
    "<TotalAmount>1.00</TotalAmount><OpenAmount>1.00</OpenAmount></Invoice></Debtor>"
)


class Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP server that serves a DTD and records every request: none may arrive."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.requests.append(self.path)
        body = f'<!ENTITY leak "{SECRET}">'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def hostile_files(folder: Path, url: str) -> dict[str, tuple[bytes, str]]:
    """name -> (content, the expected problem code)."""
    secret = folder / "secret.txt"
    secret.write_text(SECRET, "utf-8")
    laughs = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    big = "a" * 50_000
    cases = {
        "xxe-local-file.xml": (
            f'<!DOCTYPE OpenItems [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            f"{ROOT_OPEN}{DEBTOR.format(code='&x;')}</OpenItems>",
            "xml_doctype_forbidden",
        ),
        "external-dtd.xml": (
            f'<!DOCTYPE OpenItems SYSTEM "{url}/evil.dtd">{ROOT_OPEN}{DEBTOR.format(code="&leak;")}</OpenItems>',
            "xml_doctype_forbidden",
        ),
        "external-parameter-entity.xml": (
            f'<!DOCTYPE OpenItems [<!ENTITY % ext SYSTEM "{url}/param.dtd"> %ext;]>'
            f"{ROOT_OPEN}{DEBTOR.format(code='&leak;')}</OpenItems>",
            "xml_doctype_forbidden",
        ),
        "billion-laughs.xml": (
            f"<!DOCTYPE OpenItems [{''.join(laughs)}]>{ROOT_OPEN}{DEBTOR.format(code='&lol9;')}</OpenItems>",
            "xml_doctype_forbidden",
        ),
        "quadratic-blowup.xml": (
            f'<!DOCTYPE OpenItems [<!ENTITY a "{big}">]>{ROOT_OPEN}{DEBTOR.format(code="&a;" * 20_000)}</OpenItems>',
            "xml_doctype_forbidden",
        ),
        "deep-nesting.xml": (f"{ROOT_OPEN}{'<Debtor>' * 10_000}{'</Debtor>' * 10_000}</OpenItems>", "xml_too_deep"),
        "xinclude.xml": (
            f'{ROOT_OPEN[:-1]} xmlns:xi="http://www.w3.org/2001/XInclude">'
            f'<xi:include href="{secret.as_uri()}" parse="text"/>{DEBTOR.format(code="1")}</OpenItems>',
            "schema_violation",
        ),
    }
    return {name: (('<?xml version="1.0"?>\n' + text).encode(), code) for name, (text, code) in cases.items()}


def assert_clean(report: str) -> None:
    assert SECRET not in report, "a report must never contain what an entity pointed at"
    assert "lollollol" not in report and "aaaaaaaaaa" not in report


def test_the_parser_rejects_each_case_within_a_second(tmp_path: Path, http_server: str) -> None:
    for name, (content, code) in hostile_files(tmp_path, http_server).items():
        started = time.monotonic()
        with pytest.raises(RejectFile) as caught:
            snapshot = parse_payt_xml(io.BytesIO(content), XmlOptions("ACME"))
            list(snapshot.entries)
        assert time.monotonic() - started < 1.0, name
        assert [p.code for p in caught.value.problems][:1] == [code], name
        assert_clean(repr(caught.value.problems))
    assert Recorder.requests == [], "nothing may be fetched"


def test_the_validator_process_and_its_c_check_reject_each_case(tmp_path: Path, http_server: str) -> None:
    """A large file's path: the C check (libxml2 without a tree) says "not clean" within a second, and the
    parse with its validator process (``parallel_from_bytes=0``) rejects with the same first problem."""
    xsd = stream_xsd()[0]
    for name, (content, code) in hostile_files(tmp_path, http_server).items():
        path = tmp_path / name
        path.write_bytes(content)
        with path.open("rb") as stream:
            started = time.monotonic()
            assert schema_stream.clean(stream.fileno(), 0, xsd) is False, name
            assert time.monotonic() - started < 1.0, name
            with pytest.raises(RejectFile) as caught:
                list(parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0)).entries)
        assert [p.code for p in caught.value.problems][:1] == [code], name
        assert_clean(repr(caught.value.problems))
    assert Recorder.requests == [], "nothing may be fetched"


def test_validate_reports_each_case_without_the_content(
    tmp_path: Path, http_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, (content, code) in hostile_files(tmp_path, http_server).items():
        path = tmp_path / name
        path.write_bytes(content)
        capsys.readouterr()
        assert main(["--json", "validate", str(path)]) == 1
        out = capsys.readouterr()
        result = json.loads(out.out)
        assert result["valid"] is False and result["format"] == "payt-xml", name
        assert result["errors"][0]["code"] == code, name
        assert_clean(out.out + out.err)
    assert Recorder.requests == []


def peak_rss_mb(args: list[str], cwd: Path) -> tuple[int, float, bytes]:
    """Run ``args``; its exit status, its peak RSS in MB (from wait4) and its stdout."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024 / 1e6, out


def test_the_parser_stays_in_bounded_memory(tmp_path: Path, http_server: str) -> None:
    """The parser alone in a fresh interpreter: peak RSS near its baseline for every hostile case."""
    script = (
        "import sys, time\n"
        "from gateway.errors import RejectFile\n"
        "from parsers.payt_xml import XmlOptions, parse_payt_xml\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    with open(sys.argv[1], 'rb') as f:\n"
        "        list(parse_payt_xml(f, XmlOptions('ACME')).entries)\n"
        "    print('accepted')\n"
        "except RejectFile as e:\n"
        "    print(e.problems[0].code, time.monotonic() - t)\n"
    )
    baseline_code, baseline, _ = peak_rss_mb([sys.executable, "-c", "import lxml.etree, gateway.records"], tmp_path)
    assert baseline_code == 0
    for name, (content, code) in hostile_files(tmp_path, http_server).items():
        path = tmp_path / name
        path.write_bytes(content)
        status, peak, out = peak_rss_mb([sys.executable, "-c", script, str(path)], tmp_path)
        found, seconds = out.decode().split()
        assert status == 0 and found == code, name
        assert float(seconds) < 1.0, name
        assert peak < baseline + 40, f"{name}: peak RSS {peak:.0f} MB, baseline {baseline:.0f} MB"


def test_ingest_rejects_and_reports_cleanly(
    tmp_path: Path, http_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\ndata_dir = "."\ndatabase_url = "sqlite:///gateway.db"\n'
        '[administrations.ACME]\nname = "Acme"\nformat = "payt-xml"\n',
        "utf-8",
    )
    for name, (content, code) in hostile_files(tmp_path, http_server).items():
        path = tmp_path / name
        path.write_bytes(content)
        capsys.readouterr()
        assert main(["--config", str(config), "--json", "ingest", str(path), "--administration", "ACME"]) == 1
        run = json.loads(capsys.readouterr().out)
        assert run["status"] == "rejected" and run["errors"][0]["code"] == code, name
        report = (tmp_path / f"{run['archived_path']}.errors.txt").read_text("utf-8")
        assert_clean(json.dumps(run) + report)
    assert Recorder.requests == []


@pytest.mark.e2e
def test_the_daemon_rejects_each_case_and_keeps_running(tmp_path: Path, http_server: str) -> None:
    from tests.test_e2e_daemon import Daemon, cli_json, drop_by_rename, processed, write_config

    config = write_config(tmp_path)
    config.write_text(config.read_text("utf-8") + 'format = "auto"\n', "utf-8")
    d = Daemon(config)
    try:
        d.wait_for(lambda: d.events("inbox_watch_started"))
        inbox = tmp_path / "inbox" / "ACME"
        files = hostile_files(tmp_path, http_server)
        for name, (content, _) in files.items():
            drop_by_rename(inbox, name, content)
        for name in files:
            event: Callable[[], object] = processed(d, name)
            d.wait_for(event)
        runs = {r["file"]: r for r in cli_json(config, "--json", "imports") if r["file"] in files}
        for name, (_, code) in files.items():
            assert runs[name]["status"] == "rejected" and runs[name]["errors"][0]["code"] == code, name
            assert_clean(json.dumps(runs[name]))
            assert_clean((tmp_path / f"{runs[name]['archived_path']}.errors.txt").read_text("utf-8"))
        assert Recorder.requests == []
        assert d.proc.poll() is None, "the daemon keeps running"
    finally:
        assert d.stop() == 0
