"""The C schema check of a large payt-xml file (``parsers.schema_stream``) and the validator process that uses
it: the same verdict as lxml's streaming pass, from its own file offset, stopping at the first error; the
unique keys of a valid file left to the reading."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given

from gateway.errors import RejectFile
from parsers import schema_stream
from parsers.payt_xml import XmlOptions, parse_payt_xml
from parsers.payt_xml_schema import ElementStream, duplicate_keys, first_pass, stream_xsd
from parsers.payt_xml_worker import verdict
from tests.test_payt_xml import HEAD, VALID, open_items_with
from tests.test_payt_xml_properties import FUZZ, arbitrary_values, mutated

XSD = stream_xsd()[0]


@contextmanager
def descriptor(data: bytes) -> Iterator[int]:
    """An unlinked temporary file holding ``data``, at offset 0."""
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.flush()
        file.seek(0)
        yield file.fileno()


def clean(data: bytes, offset: int = 0) -> bool | None:
    with descriptor(data) as fd:
        return schema_stream.clean(fd, offset, XSD)


def lxml_clean(data: bytes) -> bool:
    """What lxml's streaming pass says, without the unique keys: no message and no file error."""
    try:
        return not first_pass(io.BytesIO(data)).messages
    except RejectFile:
        return False


def test_a_valid_file_is_clean_and_its_repeated_keys_are_not_checked() -> None:
    assert clean(VALID.encode()) is True
    twice = VALID.replace('number="2026-0044"', 'number="2026-0042"').replace('code="10046"', 'code="10045"')
    assert clean(twice.encode()) is True, "xs:unique is left to the reading"


@pytest.mark.parametrize(
    "text",
    [
        VALID.replace("<City>Zeist</City>", ""),  # a required element missing
        VALID.replace("<DueDate>2026-03-31</DueDate>", "<DueDate>2026-02-30</DueDate>", 1),  # not a date
        VALID.replace("</Invoice>\n  </Debtor>", "</Invoice>\n  </Debtr>", 1),  # not well-formed
        VALID[: len(VALID) // 2],  # cut short
        VALID.replace(HEAD, HEAD + '<!DOCTYPE OpenItems [<!ENTITY e "x">]>\n'),  # valid but for its DOCTYPE
        "",
        HEAD,
        "<OpenItems/>",
    ],
    ids=["missing", "type", "not-well-formed", "cut", "doctype", "empty", "declaration-only", "other-root"],
)
def test_anything_libxml2_says_makes_a_file_not_clean(text: str) -> None:
    assert clean(text.encode()) is False
    assert lxml_clean(text.encode()) is False


def test_the_check_reads_from_its_offset_without_moving_the_shared_one() -> None:
    data = b"PREFIX" + VALID.encode()
    with descriptor(data) as fd:
        os.lseek(fd, 3, os.SEEK_SET)
        assert schema_stream.clean(fd, len(b"PREFIX"), XSD) is True
        assert os.lseek(fd, 0, os.SEEK_CUR) == 3, "the parent's offset is untouched"
        assert schema_stream.clean(fd, 0, XSD) is False


def test_libxml2_stops_at_the_first_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 invalid invoices: one error is reported, and the parser is stopped there."""
    seen: list[int] = []
    real = schema_stream._run

    def counting(lib: schema_stream._LibXml2, valid_ctxt: int, fd: int) -> bool | None:
        stopped = 0
        stop = lib.stop_parser

        def stop_and_count(parser: int) -> None:
            nonlocal stopped
            stopped += 1
            stop(parser)

        lib.stop_parser = stop_and_count
        try:
            return real(lib, valid_ctxt, fd)
        finally:
            lib.stop_parser = stop
            seen.append(stopped)

    monkeypatch.setattr(schema_stream, "_run", counting)
    data = open_items_with(5000).replace(b"<TotalAmount>10.00<", b"<TotalAmount>ten<")
    assert clean(data) is False
    assert seen == [1]


@FUZZ
@given(mutated())
def test_the_verdict_is_lxmls_on_mutated_documents(data: bytes) -> None:
    assert clean(data) is lxml_clean(data)


@FUZZ
@given(arbitrary_values())
def test_the_verdict_is_lxmls_on_arbitrary_values(data: bytes) -> None:
    assert clean(data) is lxml_clean(data)


def test_the_validator_leaves_the_keys_of_a_valid_file_to_the_reading(tmp_path: Path) -> None:
    twice = VALID.replace('number="2026-0044"', 'number="2026-0042"')
    path = tmp_path / "twice.xml"
    path.write_text(twice, "utf-8")
    with path.open("rb") as stream:
        assert verdict(stream.fileno(), 0) == []
        stream.seek(0)
        reading = ElementStream(stream, validate=False, hash_keys=True)
        for _ in reading:
            pass
        stream.seek(0)
        problems = duplicate_keys(stream, reading)
    assert [(p.code, p.row) for p in problems] == [("duplicate_invoice_number", 12), ("duplicate_invoice_number", 27)]
    with path.open("rb") as stream, pytest.raises(RejectFile) as caught:
        list(parse_payt_xml(stream, XmlOptions("ACME", parallel_from_bytes=0)).entries)
    assert caught.value.problems == problems


def test_the_validator_locates_every_error_of_an_invalid_file_repeated_keys_included(tmp_path: Path) -> None:
    bad = VALID.replace('number="2026-0044"', 'number="2026-0042"').replace("<City>Zeist</City>", "")
    path = tmp_path / "bad.xml"
    path.write_text(bad, "utf-8")
    with path.open("rb") as stream:
        problems = verdict(stream.fileno(), 0)
    assert sorted({p.code for p in problems}) == ["duplicate_invoice_number", "schema_violation"]


def test_a_collision_of_hashes_is_no_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "valid.xml"
    path.write_text(VALID, "utf-8")
    with path.open("rb") as stream:
        reading = ElementStream(stream, validate=False, hash_keys=True)
        for _ in reading:
            pass
        reading.hashed["UniqueInvoiceNumber"].add("2026-0042")  # as if another key had the same hash
        assert reading.verdict().repeated
        stream.seek(0)
        assert duplicate_keys(stream, reading) == []


def test_without_its_own_descriptor_the_check_does_not_run() -> None:
    """None (the caller validates with lxml) when the file cannot be opened again through /proc/self/fd."""
    read, write = os.pipe()
    os.close(read)
    os.close(write)
    assert schema_stream.clean(read, 0, XSD) is None
