"""What kind of file is this? Decided by content (magic bytes, XML root element and namespace, CSV header),
never by the file name's extension alone (FORMATS.md §2-4).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import enum
from typing import BinaryIO

from lxml import etree

from gateway.errors import RejectFile
from gateway.records import error
from parsers.column_spec import load_spec, normalise_header
from parsers.xml_safety import SAFE_OPTIONS

PAYT_XML_NS = "urn:payt-gateway:open-items:1"
UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
HEAD_BYTES = 64 * 1024


class Kind(enum.StrEnum):
    PAYT_CSV = "payt-csv"
    PAYT_XML = "payt-xml"
    UBL = "ubl"
    PDF = "pdf"
    ZIP = "zip"
    GZIP = "gzip"
    UNKNOWN_XML = "unknown-xml"
    UNKNOWN = "unknown"


OPEN_ITEMS_KINDS = (Kind.PAYT_CSV, Kind.PAYT_XML)


def sniff(stream: BinaryIO) -> Kind:
    """Read the head of ``stream`` (and seek back) to tell its kind."""
    start = stream.tell()
    head = stream.read(HEAD_BYTES)
    stream.seek(start)
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> Kind:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Kind.ZIP
    if head.startswith(b"\x1f\x8b"):
        return Kind.GZIP
    if b"%PDF-" in head[:1024]:
        return Kind.PDF
    text = _decode_head(head)
    if text is None:
        return Kind.UNKNOWN
    if text.lstrip().startswith("<"):
        return _xml_kind(head)
    return Kind.PAYT_CSV if _looks_like_payt_header(text) else Kind.UNKNOWN


def root_tag(head: bytes) -> str | None:
    """The ``{namespace}name`` of the document's root element, read safely from the head of the file."""
    parser = etree.XMLPullParser(events=("start",), **SAFE_OPTIONS)
    with contextlib.suppress(etree.XMLSyntaxError):
        parser.feed(head)  # an error after the root's start tag (an entity in an attribute) still names the root
    for _event, element in parser.read_events():
        return str(getattr(element, "tag", "")) or None
    return None


def _xml_kind(head: bytes) -> Kind:
    tag = root_tag(head)
    if tag == f"{{{PAYT_XML_NS}}}OpenItems":
        return Kind.PAYT_XML
    if tag in (f"{{{UBL_INVOICE_NS}}}Invoice", f"{{{UBL_CREDIT_NOTE_NS}}}CreditNote"):
        return Kind.UBL
    return Kind.UNKNOWN_XML


def _decode_head(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return head[3:].decode("utf-8", "ignore")
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return head.decode("utf-16", "ignore")
    if b"\x00" in head[:4096]:
        return None
    return head.decode("utf-8", "ignore") if _is_utf8_or_ascii(head) else head.decode("cp1252", "replace")


def _is_utf8_or_ascii(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a character cut off at the end of the head
    return True


def _looks_like_payt_header(text: str) -> bool:
    """True when the first line names at least two payt-csv columns (by canonical name or alias)."""
    first = text.splitlines()[0] if text else ""
    spec = load_spec()
    best = 0
    for delimiter in (";", ",", "\t", "|"):
        try:
            cells = next(csv.reader([first], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        best = max(best, sum(1 for c in cells if spec.match(normalise_header(c)) is not None))
    return best >= 2


def open_items_format(kind: Kind, configured: str) -> str:
    """The parser for an open-items file of ``kind`` under an administration's ``format`` setting.

    ``auto`` takes what the content says; a text file that is not XML goes to the CSV parser, whose header
    errors say what is missing. An explicit format must agree with the content. Raises ``RejectFile``.
    """
    detected = Kind.PAYT_CSV if kind is Kind.UNKNOWN else kind
    if detected is Kind.UNKNOWN_XML:
        raise RejectFile(
            [
                error(
                    "unknown_xml",
                    f'the XML document is not payt-xml open items (root <OpenItems xmlns="{PAYT_XML_NS}">) '
                    "nor a UBL 2.1 Invoice or CreditNote",
                )
            ]
        )
    if detected not in OPEN_ITEMS_KINDS:
        raise RejectFile([error("unsupported_file", f"a {detected} file is not open items")])
    if configured not in ("auto", detected.value):
        raise RejectFile(
            [
                error(
                    "format_mismatch",
                    f"the file is {detected.value}, but the administration is configured for {configured}",
                )
            ]
        )
    return detected.value
