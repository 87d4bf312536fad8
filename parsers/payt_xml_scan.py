"""payt-xml read as text where it is written plainly, with lxml where it is not (``XmlReading``).

Reading a large payt-xml file with lxml costs most of its time in making a Python proxy, a ``{namespace}tag``
string and a text for every element (~12 per invoice). Most exporters write the file plainly: each element
as ``<Tag>text</Tag>`` or ``<Tag attribute="value">`` in the schema's order, no comments, CDATA, processing
instructions or prefixes. ``Scan`` reads such a file's text with one regular expression per invoice and per
debtor child, and hands the values to the same checks as the lxml reading (``Extractor.quick``,
``Extractor.debtor``, ``Extractor.slow_invoice``), so that the entries, problems and blocked keys are the
same. Lines are counted in the text; the line of a problem's element comes from lxml, on that debtor or
invoice alone (``FragmentLines``), so it is the same too.

It vouches only for what it fully matches. The first thing it does not (another form, an unknown entity, a
character reference that is not an XML character, a lone CR, a debtor of more than ``MAX_DEBTOR_CHARS``, or
anything after the last debtor other than the root's end tag) hands the file to the lxml reading, from the
start: the snapshot's problems, blocked keys and row count go back to what they were, the key hashes start
anew, and the entries that the scan already gave are read again and not given twice. So a file gives what the
lxml reading alone gives; one that the scan gives up on late costs up to a scan more. Which files the scan
takes at all: UTF-8 (declared or not), the root's start tag plain and first after the XML declaration.

Validity is not the scan's concern: as with the lxml reading, a large file is validated beside it and a small
one before it (``parsers.payt_xml``), and an invalid file is rejected whatever was read.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any

from lxml import etree

from gateway.records import Entry, Snapshot
from parsers.payt_xml import (
    _INVOICE_TAGS,
    DEBTOR_PATHS,
    INVOICE_PATHS,
    Extractor,
    XmlOptions,
    _Checks,
    _line_of,
    _q,
    extract,
)
from parsers.payt_xml_schema import DEBTOR, INVOICE, MASK, NS, ElementStream
from parsers.row_checks import Finding
from parsers.xml_safety import safe_parser

CHUNK_CHARS = 1 << 19  # bytes read at a time (a larger buffer costs memory, not time: 4 MiB took ~20 MB more)
MAX_DEBTOR_CHARS = 4 << 20  # a debtor longer than this (~10,000 invoices) is read by lxml
HEAD_CHARS = 64 << 10  # the root's start tag must end within this

_WS = r"[ \t\r\n]*"  # between elements (a debtor with a lone CR, a line end to libxml2, is refused)
# Character data: no markup, no CR (libxml2 turns CRLF into LF). "&" is taken and resolved afterwards
# (``_resolved``). A character that XML forbids is not looked for: the file is not well-formed, and the
# validation rejects it whatever was read.
_TEXT = r"([^<\r]*)"
# An attribute value in double quotes: no tab, LF or CR either (XML turns them into spaces).
_ATTR = r'"([^"<\t\n\r]*)"'
# The element names, from the paths that payt_xml reads (``DEBTOR_PATHS``, ``INVOICE_PATHS``).
_DEBTOR_TAGS = "|".join(dict.fromkeys(path for path in DEBTOR_PATHS.values() if path.isalpha()))
_ADDRESS_TAGS = "|".join(path.split("/")[1] for path in DEBTOR_PATHS.values() if path.startswith("Address/"))
_INVOICE_TEXTS = [path for path in INVOICE_PATHS.values() if path.isalpha()]  # in the schema's order
_REQUIRED_TEXTS = 4  # InvoiceDate, DueDate, TotalAmount and OpenAmount; the rest are optional
_DEBTOR_START = re.compile(rf"{_WS}<Debtor code={_ATTR}(?: isCompany={_ATTR})?>")
_DEBTOR_CHILD = re.compile(rf"{_WS}<({_DEBTOR_TAGS})(?: type={_ATTR})?>{_TEXT}</\1>")
_ADDRESS = re.compile(rf"{_WS}<Address>")
_ADDRESS_PART = re.compile(rf"{_WS}<({_ADDRESS_TAGS})>{_TEXT}</\1>")
_ADDRESS_END = re.compile(rf"{_WS}</Address>")
# Its groups: the number, the texts in ``Extractor.quick``'s order (absent: None), the document's file name.
_INVOICE = re.compile(
    rf"{_WS}<Invoice number={_ATTR}>"
    + "".join(
        rf"{_WS}<{tag}>{_TEXT}</{tag}>" if i < _REQUIRED_TEXTS else rf"(?:{_WS}<{tag}>{_TEXT}</{tag}>)?"
        for i, tag in enumerate(_INVOICE_TEXTS)
    )
    + rf"(?:{_WS}<Document filename={_ATTR} ?/>)?{_WS}</Invoice>"
)
_DEBTOR_END = re.compile(rf"{_WS}</Debtor>")
_DOCUMENT_END = re.compile(r"(?:[ \t\n]|\r\n)*</OpenItems>(?:[ \t\n]|\r\n)*")
_HEAD = re.compile(
    r"\ufeff?(?:<\?xml(?P<declaration>[^<>]*)\?>)?"
    + _WS
    + rf'<OpenItems(?:[ \t\r\n]+[A-Za-z_][-A-Za-z0-9_.:]*{_WS}={_WS}"[^"<>&]*")*'
    + _WS
    + ">"
)
_ENCODING = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")
_REFERENCE = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


class _Refused(Exception):
    """The text is not in the form the scan vouches for: lxml reads the file."""


def _xml_char(code: int) -> bool:
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF


def _reference(match: re.Match[str]) -> str:
    if match[1]:
        return _NAMED[match[1]]
    code = int(match[2]) if match[2] else int(match[3], 16)
    if not _xml_char(code):
        raise _Refused
    return chr(code)


def _resolved(value: str | None) -> str | None:
    """``value`` with its entity and character references replaced, as lxml gives it; ``_Refused`` for an
    "&" that is not one of those."""
    if value is None or "&" not in value:
        return value
    if value.count("&") != len(_REFERENCE.findall(value)):
        raise _Refused
    return _REFERENCE.sub(_reference, value)


@dataclass
class FragmentLines:
    """The lines of a debtor's or an invoice's elements, found by lxml in that element's text alone (shifted to
    its line in the file), and only when a problem is reported."""

    text: str
    start: int  # the element's text in ``text``: from its start tag to ``end`` (a debtor's: to its first invoice)
    end: int
    sourceline: int
    invoice: bool
    _element: Any = field(default=None, repr=False)

    def of(self, relative: str) -> int | None:
        if self._element is None:
            fragment = self.text[self.start : self.end]
            inner = f'<Debtor code="">{fragment}</Debtor>' if self.invoice else f"{fragment}</Debtor>"
            root = etree.fromstring(f'<OpenItems xmlns="{NS}">{inner}</OpenItems>'.encode(), safe_parser())
            self._element = root[0][0] if self.invoice else root[0]
        line = _line_of(self._element, relative)
        return None if line is None else line + self.sourceline - 1


@dataclass
class Scan:
    """A payt-xml file's text from the end of its root's start tag (``open``), read into entries (``entries``)."""

    decoder: Any
    source: IO[bytes]
    keys: ElementStream
    line: int  # the line at ``buffer[mark]``
    chunk_chars: int = CHUNK_CHARS
    buffer: str = ""
    mark: int = 0
    given: int = 0  # entries given so far
    done: bool = False  # read to the end

    @classmethod
    def open(cls, source: IO[bytes], keys: ElementStream, chunk_chars: int = CHUNK_CHARS) -> Scan | None:
        """The scan of ``source`` from its current position (the start of the document), or None when the scan
        does not take the file (see the module's text). Leaves the position after the root's start tag."""
        start = source.tell()
        head_bytes = source.read(HEAD_CHARS)
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        try:
            head = decoder.decode(head_bytes)
        except UnicodeDecodeError:
            return None
        found = _HEAD.match(head)
        if found is None or keys.keyed.get(DEBTOR, ("code",))[0] != "code":
            return None
        if keys.keyed.get(INVOICE, ("number",))[0] != "number":
            return None
        encoding = _ENCODING.search(found["declaration"] or "")
        if encoding is not None and encoding[1].lower() != "utf-8":
            return None
        taken = head[: found.end()]
        if taken.count("\r") != taken.count("\r\n"):
            return None
        source.seek(start + len(taken.encode("utf-8")))
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        return cls(decoder, source, keys, taken.count("\n") + 1, chunk_chars)

    def _line_at(self, pos: int) -> int:
        """The line of ``buffer[pos]`` (``pos`` never less than at the last call since the buffer changed)."""
        self.line += self.buffer.count("\n", self.mark, pos)
        self.mark = pos
        return self.line

    def _more(self, pos: int) -> bool:
        """The buffer from ``pos`` on with the next chunk of text; False at the end of the file."""
        self._line_at(pos)
        data = self.source.read(self.chunk_chars)
        self.buffer = self.buffer[pos:] + self.decoder.decode(data, final=not data)
        self.mark = 0
        return bool(data)

    def entries(self, extractor: Extractor) -> Iterator[Entry]:
        """The entries of every debtor while the text is in the scan's form; ``done`` when it read to the end."""
        pos = 0
        try:
            while True:
                end = self.buffer.find("</Debtor>", pos)
                if end < 0:
                    if len(self.buffer) - pos > MAX_DEBTOR_CHARS:
                        return
                    more = self._more(pos)
                    pos = 0
                    if more:
                        continue
                    self.done = _DOCUMENT_END.fullmatch(self.buffer) is not None
                    return
                buffer = self.buffer
                start = _DEBTOR_START.match(buffer, pos, end)
                if start is None or buffer.count("\r", pos, end) != buffer.count("\r\n", pos, end):
                    return
                pos = yield from self._debtor(extractor, start, end + len("</Debtor>"))
                if pos < 0:
                    return
        except (_Refused, UnicodeDecodeError):
            return

    def _debtor(self, extractor: Extractor, start: re.Match[str], stop: int) -> Generator[Entry, None, int]:
        """One debtor's entries: its text runs from ``start`` (its start tag's match) to ``stop``. Returns the
        position after it, or -1 when the scan does not vouch for it."""
        buffer, keys = self.buffer, self.keys
        pos = start.start()
        code_raw, is_company = _resolved(start[1]), _resolved(start[2])
        assert code_raw is not None
        tag_at = buffer.rfind("<", pos, start.end(1))
        debtor_line = self._line_at(tag_at)
        raw = extractor.debtor_cells(code_raw, is_company)
        found: list[Finding] = []
        simple = extractor.checks.debtor_child_slot
        address_slot = extractor.checks.address_slot
        at = start.end()
        while True:
            child = _DEBTOR_CHILD.match(buffer, at, stop)
            if child is not None:
                tag, text = _q(child[1]), _resolved(child[3])
                position = simple.get(tag)
                if position is not None:
                    raw[position] = text or ""
                else:
                    extractor.typed(raw, found, tag, _resolved(child[2]), text)
                at = child.end()
                continue
            address = _ADDRESS.match(buffer, at, stop)
            if address is None:
                break
            at = address.end()
            while (part := _ADDRESS_PART.match(buffer, at, stop)) is not None:
                raw[address_slot[_q(part[1])]] = _resolved(part[2]) or ""
                at = part.end()
            closed = _ADDRESS_END.match(buffer, at, stop)
            if closed is None:
                return -1
            at = closed.end()
        debtor_key = keys.keyed.get(DEBTOR)
        if debtor_key is not None:
            h = hash(code_raw)
            debtor_key[1][h & MASK].append(h)
        invoice = _INVOICE.match(buffer, at, stop)
        if invoice is None:
            end = _DEBTOR_END.match(buffer, at, stop)
            if end is None or end.end() != stop:
                return -1
            extractor.debtor_without_invoices(code_raw, debtor_line)
            return stop
        debtor = extractor.debtor(raw, found, FragmentLines(buffer, tag_at, at, debtor_line, False))
        code = code_raw.strip()
        line, counted = debtor_line, tag_at
        quick, slow = extractor.quick, extractor.slow_invoice
        snapshot = extractor.snapshot
        invoice_key = keys.keyed.get(INVOICE)
        buckets = invoice_key[1] if invoice_key is not None else None
        plain = buffer.find("&", at, stop) < 0
        index = 0
        while invoice is not None:
            texts = invoice.groups()
            if not plain:
                texts = tuple(_resolved(t) for t in texts)
            number = texts[0] or ""
            invoice_at = invoice.start(1)
            line += buffer.count("\n", counted, invoice_at)
            counted = invoice_at
            if buckets is not None:
                h = hash(number)
                buckets[h & MASK].append(h)
            index += 1
            snapshot.rows += 1
            value = quick(code, *texts) if debtor is not None else None
            if value is None:
                tagged = zip(_INVOICE_TAGS, texts[1:11], strict=True)
                children = {tag: text for tag, text in tagged if text is not None}
                lines = FragmentLines(buffer, buffer.rfind("<", invoice.start(), invoice_at), invoice.end(), line, True)
                value = slow(children, number, texts[11] or "", lines, code, index, debtor is not None)
            if value is not None and debtor is not None:
                self.given += 1
                yield Entry(line, debtor, value)
            at = invoice.end()
            invoice = _INVOICE.match(buffer, at, stop)
        self.line, self.mark = line, counted
        end = _DEBTOR_END.match(buffer, at, stop)
        return stop if end is not None and end.end() == stop else -1


@dataclass
class XmlReading:
    """The entries of a payt-xml file: scanned as text while ``Scan`` vouches for it, then read by lxml from the
    start (the entries given already are not given again). ``keys``: the key hashes, for ``duplicate_keys``."""

    source: IO[bytes]
    snapshot: Snapshot
    options: XmlOptions
    hash_keys: bool
    chunk_chars: int = CHUNK_CHARS  # bytes read at a time (smaller in tests: debtors across chunks)
    keys: ElementStream = field(init=False)
    scanned: int = 0  # entries given by the scan
    handed_over: bool = False  # lxml read the file (from the start)

    def __post_init__(self) -> None:
        self.keys = ElementStream(self.source, validate=False, hash_keys=self.hash_keys)

    def entries(self) -> Iterator[Entry]:
        source, snapshot = self.source, self.snapshot
        start = source.tell()
        problems = len(snapshot.problems)
        blocked = set(snapshot.blocked_invoices), set(snapshot.blocked_debtors)
        rows = snapshot.rows
        scan = Scan.open(source, self.keys, self.chunk_chars)
        if scan is not None:
            extractor = Extractor(_Checks(self.options), snapshot)
            yield from scan.entries(extractor)
            self.scanned = scan.given
            if scan.done:
                extractor.finish()
                return
            del snapshot.problems[problems:]
            snapshot.blocked_invoices, snapshot.blocked_debtors = blocked
            snapshot.rows = rows
        self.handed_over = True
        source.seek(start)
        self.keys = ElementStream(source, validate=False, hash_keys=self.hash_keys)
        reading = extract(self.keys, snapshot, self.options)
        deque(islice(reading, self.scanned), maxlen=0)  # given by the scan already
        yield from reading
