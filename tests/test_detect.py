"""Format detection by content, never by the file name: ``sniff`` and ``validate`` without ``--format``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import RejectFile
from parsers.detect import Kind, open_items_format, sniff
from tests.test_payt_xml import VALID

CSV = (
    "debiteurnummer;naam;adres;postcode;plaats;factuurnummer;factuurdatum;vervaldatum;factuurbedrag;openstaand\n"
    "10045;Voorbeeld B.V.;Kerkstraat 1;1234 AB;Utrecht;2026-0042;2026-02-28;2026-03-30;1210,00;610,00\n"
)
UBL = (
    '<?xml version="1.0"?><Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>1</ID></Invoice>'
)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (VALID.encode(), Kind.PAYT_XML),
        (b"\xef\xbb\xbf" + VALID.encode(), Kind.PAYT_XML),
        (VALID.encode("utf-16"), Kind.PAYT_XML),
        (CSV.encode(), Kind.PAYT_CSV),
        (CSV.encode("cp1252"), Kind.PAYT_CSV),
        (UBL.encode(), Kind.UBL),
        (b'<?xml version="1.0"?><OpenItems administrationCode="A"/>', Kind.UNKNOWN_XML),
        (b"%PDF-1.7\n", Kind.PDF),
        (b"PK\x03\x04rest", Kind.ZIP),
        (b"\x1f\x8b\x08rest", Kind.GZIP),
        (b"hello;world\n1;2\n", Kind.UNKNOWN),
    ],
)
def test_sniff_reads_the_content(content: bytes, kind: Kind) -> None:
    stream = io.BytesIO(content)
    assert sniff(stream) is kind and stream.tell() == 0


def test_a_root_is_named_even_when_an_entity_breaks_the_rest() -> None:
    hostile = '<!DOCTYPE OpenItems [<!ENTITY x SYSTEM "file:///etc/hostname">]>' + VALID[VALID.index("<OpenItems") :]
    assert sniff(io.BytesIO(hostile.replace('code="10045"', 'code="&x;"').encode())) is Kind.PAYT_XML


def test_an_explicit_format_must_agree_with_the_content() -> None:
    assert open_items_format(Kind.PAYT_XML, "auto") == "payt-xml"
    assert open_items_format(Kind.PAYT_XML, "payt-xml") == "payt-xml"
    with pytest.raises(RejectFile) as caught:
        open_items_format(Kind.PAYT_XML, "payt-csv")
    assert caught.value.problems[0].code == "format_mismatch"


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main(["--json", "validate", *args])
    return code, json.loads(capsys.readouterr().out)


def test_validate_detects_the_format_whatever_the_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xml_named_csv = tmp_path / "open-items.csv"
    xml_named_csv.write_text(VALID, "utf-8")
    csv_named_xml = tmp_path / "open-items.xml"
    csv_named_xml.write_text(CSV, "utf-8")
    code, result = validate(capsys, str(xml_named_csv))
    assert code == 0 and result["format"] == "payt-xml" and result["rows"] == 3
    code, result = validate(capsys, str(csv_named_xml))
    assert code == 0 and result["format"] == "payt-csv" and result["rows"] == 1
    code, result = validate(capsys, str(xml_named_csv), "--format", "payt-csv")
    assert code == 1 and [e["code"] for e in result["errors"]] == ["format_mismatch"]  # type: ignore[union-attr]
