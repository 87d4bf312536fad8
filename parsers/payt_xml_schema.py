"""Validation of payt-xml against ``schemas/payt-xml-1.xsd``, streaming, with every error located.

Two passes, both in bounded memory:

1. ``first_pass``: lxml ``iterparse`` with the schema (libxml2 validates while it parses, ~C speed), clearing
   each invoice and debtor once it is read. libxml2 reports a violation only when the document ends, and then
   with line 0 and no element path; it says what is wrong. The schema it validates against is the published
   XSD without its ``xs:unique`` constraints (libxml2 would keep every key until the end of the document);
   the pass checks those itself with 8-byte hashes (``parsers.unique_keys``), so a repeated hash is only a
   candidate duplicate.
2. ``explain`` (only when the first pass failed or found a candidate duplicate): read the file again without
   the schema and validate the root with one debtor at a time (at most ``BATCH`` of its invoices), which gives
   libxml2's errors with their source line, and an element path that is translated to
   ``/OpenItems/Debtor[12]/Invoice[3]/DueDate`` with the file's own positions. The keys whose hash was
   repeated are located in the same read and compared exactly: a hash collision is no error.

At most ``MAX_LISTED`` errors are listed; the first pass stops counting at ``MAX_COUNTED``.

``ElementStream`` is the element stream of both: with ``validate=True`` the first pass (run by the validator
process of a large file, ``parsers.payt_xml_worker``), without it the parser's reading of the entries.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from typing import IO, Any, cast

from lxml import etree

from gateway.errors import RejectFile
from gateway.records import Problem, error, notice
from parsers.unique_keys import BUCKETS, HashedKeys, KeySpec, without_identity_constraints
from parsers.xml_safety import SAFE_OPTIONS, refuse_doctype, safe_parser, syntax_error

NS = "urn:payt-gateway:open-items:1"
SCHEMA_RESOURCE = "payt-xml-1.xsd"
ROOT = f"{{{NS}}}OpenItems"
DEBTOR = f"{{{NS}}}Debtor"
INVOICE = f"{{{NS}}}Invoice"
MAX_LISTED = 100  # schema errors listed in a report
MAX_COUNTED = 1000  # the first pass stops here: the file is invalid, and nobody reads a thousand errors
BATCH = 500  # invoices of one debtor validated together in the second pass
MASK = BUCKETS - 1  # a hash's bucket in HashedKeys
CHECK_EVERY = 64  # debtors between two looks at the first pass's error count

# What the schema's simple types accept, in an exporter's words.
TYPE_WORDS = {
    "Date": "a date yyyy-mm-dd",
    "DateOrDateTime": "a date yyyy-mm-dd or a date and time (2026-03-01T10:15:00+01:00)",
    "Amount": "an amount with a decimal point and at most two decimals (1210.00)",
    "CurrencyCode": "an ISO 4217 currency code (EUR)",
    "CountryCode": "an ISO 3166-1 alpha-2 country code (NL)",
    "LanguageCode": "an ISO 639-1 language code (nl, or nl-BE)",
    "Text": "text of 1 to 255 characters",
    "Code": "a code of at most 255 characters without leading or trailing spaces",
    "xs:boolean": "true or false",
    "xs:dateTime": "a date and time (2026-03-04T01:00:00+01:00)",
}
_ATOMIC = re.compile(r"is not a valid value of the (?:atomic|union|list) type '([^']+)'")
_ELEMENT_PREFIX = re.compile(r"^Element '([^']+)'(?:, attribute '([^']+)')?: ")


@dataclass(frozen=True)
class StreamSchema:
    """The payt-xml schema as the streaming pass uses it: compiled without its identity constraints, which
    are listed in ``keys`` and checked by the pass itself."""

    schema: etree.XMLSchema
    keys: tuple[KeySpec, ...]


@functools.cache
def stream_xsd() -> tuple[bytes, tuple[KeySpec, ...]]:
    """The published XSD without its identity constraints, as a document, and those constraints."""
    source = files("schemas").joinpath(SCHEMA_RESOURCE).read_bytes()
    document, keys = without_identity_constraints(etree.fromstring(source, safe_parser()))
    return etree.tostring(document), keys


@functools.cache
def load_schema() -> StreamSchema:
    """The compiled payt-xml schema, once per process (derived from the published XSD at load time)."""
    xsd, keys = stream_xsd()
    return StreamSchema(etree.XMLSchema(etree.fromstring(xsd, safe_parser())), keys)


@dataclass
class FirstPass:
    valid: bool
    messages: list[str] = field(default_factory=list)  # libxml2's, without line numbers
    stopped: bool = False  # the pass stopped at MAX_COUNTED errors
    repeated: dict[str, set[int]] = field(default_factory=dict)  # per constraint: hashes of candidate duplicates


class ElementStream:
    """The Debtor and Invoice elements of a payt-xml stream, each at its end.

    Each element is cleared, with the elements before it, when the consumer asks for the next one, so memory
    stays bounded however many debtors and invoices there are (a debtor's data is read with its first
    invoice). With ``validate``, libxml2 validates against the stream schema while it parses and the keys of
    its ``xs:unique`` constraints are hashed; ``verdict()`` after the iteration says whether the file is valid
    (the iteration ends early once ``MAX_COUNTED`` errors are logged). ``hash_keys`` hashes the keys without
    validating: the reading of a file that ``parsers.schema_stream`` validates (``duplicate_keys`` after it).
    Iterating raises ``RejectFile`` for a DOCTYPE or XML that is not well-formed.
    """

    def __init__(self, source: IO[bytes], validate: bool, hash_keys: bool | None = None):
        self.source = source
        self.validate = validate
        self.messages: list[str] = []
        self.stopped = False
        loaded = load_schema()
        hashing = validate if hash_keys is None else hash_keys
        self.hashed = {spec.name: HashedKeys() for spec in loaded.keys} if hashing else {}
        # tag -> (attribute, the buckets of its HashedKeys): the loop adds to them itself (HashedKeys.add inlined)
        self.keyed = {spec.tag: (spec.attribute, self.hashed[spec.name].buckets) for spec in loaded.keys if hashing}
        self.schema = loaded.schema if validate else None

    def __iter__(self) -> Iterator[Any]:
        etree.clear_error_log()  # the log that a failed iterparse reports would hold earlier parses' errors too
        keyed, mask = self.keyed, MASK
        root_tag = ROOT if self.validate else None  # its end says the document is complete (see below)
        tags = tuple(dict.fromkeys((DEBTOR, INVOICE, *keyed, *([ROOT] if root_tag else []))))
        parser = etree.iterparse(self.source, events=("end",), tag=tags, schema=self.schema, **SAFE_OPTIONS)
        checked = False
        closed = False
        debtors = 0
        try:
            for _, element in parser:
                if not checked:
                    refuse_doctype(element)
                    checked = True
                tag = element.tag
                if tag == root_tag and element.getparent() is None:
                    closed = True
                    continue
                key = keyed.get(tag)
                if key is not None:
                    value = element.get(key[0])
                    if value is not None:
                        h = hash(value)
                        key[1][h & mask].append(h)
                yield element
                element.clear(keep_tail=True)
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]  # only what precedes: the parser may have read ahead
                if tag == DEBTOR and self.validate:
                    debtors += 1
                    if debtors % CHECK_EVERY == 0 and len(parser.error_log) >= MAX_COUNTED:
                        self.messages, self.stopped = _schema_messages(parser.error_log), True
                        return
        except etree.XMLSyntaxError as exc:
            log = cast(Iterable[Any], exc.error_log)
            messages = _schema_messages(log) if self.validate else []
            if not messages or any(e.domain_name != "SCHEMASV" for e in log if e.level_name in ("ERROR", "FATAL")):
                # (With the schema, libxml2 can lose the syntax error itself: "no element found", an empty log.)
                raise syntax_error(exc) from None
            self.messages = messages
            return
        root = getattr(parser, "root", None)
        if root is not None and not checked:
            refuse_doctype(root)
        if self.validate:
            self.messages = _schema_messages(parser.error_log)
            if not closed and not self.messages:
                # With the schema, libxml2 can end a document cut short without a word (lxml 5/6).
                raise RejectFile([error("xml_not_well_formed", "the XML ends before its root element is closed")])

    def verdict(self) -> FirstPass:
        """After the iteration: the schema messages and the candidate duplicate keys."""
        repeated = {name: found for name, keys in self.hashed.items() if (found := keys.repeated())}
        valid = not self.messages and not repeated
        return FirstPass(valid, self.messages, self.stopped, repeated)


def first_pass(source: IO[bytes]) -> FirstPass:
    """Validate while parsing. Raises ``RejectFile`` for a DOCTYPE or XML that is not well-formed.

    A file error is the one that reading without the schema gives: with the schema, libxml2 can report a
    mismatched end tag as "no element found", without a line."""
    start = source.tell()
    stream = ElementStream(source, validate=True)
    try:
        for _ in stream:
            pass
    except RejectFile:
        source.seek(start)
        for _ in ElementStream(source, validate=False):
            pass
        raise
    return stream.verdict()


def _schema_messages(log: Any) -> list[str]:
    return [e.message for e in cast(Iterable[Any], log) if e.domain_name == "SCHEMASV"][:MAX_COUNTED]


def _plain(message: str) -> str:
    return message.replace(f"{{{NS}}}", "")


class _Explainer:
    """The second pass: libxml2's errors with lines and readable paths, one debtor at a time."""

    def __init__(self, first: FirstPass):
        loaded = load_schema()
        self.schema = loaded.schema
        self.keys = {spec.tag: spec for spec in loaded.keys}
        self.repeated = first.repeated
        self.seen: set[tuple[int, str, str]] = set()
        self.problems: list[Problem] = []
        self.total = 0
        self.debtor = 0  # 1-based position of the current debtor
        self.invoices_removed = 0  # invoices of the current debtor already validated and removed
        self.key_lines: dict[tuple[str, str], list[tuple[int, str]]] = {}

    def run(self, source: IO[bytes]) -> None:
        """Validate each complete debtor (in batches of invoices) in a small document of its own.

        Only elements whose end has been seen are complete (the parser reads ahead), so a unit is copied out
        of the tree at its end event: a copy keeps its source lines.
        """
        parser = etree.iterparse(source, events=("start", "end"), tag=(ROOT, DEBTOR, INVOICE), **SAFE_OPTIONS)
        root: Any = None
        batch: list[Any] = []
        for event, element in parser:
            if event == "start":
                if element.tag == ROOT and root is None:
                    root = element
                elif element.tag == DEBTOR:
                    self.debtor += 1
                    self.invoices_removed = 0
                continue
            if element.tag == INVOICE:
                self._note_key(element)
                batch.append(element)
                if len(batch) >= BATCH:
                    self._validate_unit(root, element.getparent(), batch)
                    self.invoices_removed += len(batch)
                    for invoice in batch:
                        invoice.getparent().remove(invoice)
                    batch = []
                continue
            if element.tag == DEBTOR:
                self._note_key(element)
                self._validate_unit(root, element, None)
                batch = []
                for old in list(element.itersiblings(preceding=True)):
                    root.remove(old)  # stray elements before this debtor were validated with it
                root.remove(element)
        if root is not None and (len(root) or self.debtor == 0):
            self._validate_unit(root, None, None)

    def _validate_unit(self, root: Any, debtor: Any, invoices: list[Any] | None) -> None:
        """Validate the root's attributes with ``debtor`` (all of it, or its data and ``invoices``), and the
        stray elements before it; without a debtor, the root's remaining children."""
        unit = etree.Element(ROOT, dict(root.attrib), nsmap=root.nsmap)
        if debtor is None:
            unit.extend(copy.deepcopy(child) for child in root)
        else:
            unit.extend(copy.deepcopy(child) for child in reversed(list(debtor.itersiblings(preceding=True))))
            if invoices is None:
                unit.append(copy.deepcopy(debtor))
            else:
                shell = etree.SubElement(unit, DEBTOR, dict(debtor.attrib))
                shell.extend(copy.deepcopy(child) for child in debtor if child.tag != INVOICE)
                shell.extend(copy.deepcopy(invoice) for invoice in invoices)
        self._validate(unit, root.sourceline or 1)

    def _note_key(self, element: Any) -> None:
        """Where a key lies whose hash the first pass saw more than once."""
        spec = self.keys.get(element.tag)
        if spec is None:
            return
        hashes = self.repeated.get(spec.name)
        value = element.get(spec.attribute)
        if hashes and value is not None and hash(value) in hashes:
            path = f"{self._path(element)}/@{spec.attribute}"
            self.key_lines.setdefault((spec.name, value), []).append((element.sourceline or 0, path))

    def _validate(self, unit: Any, root_line: int) -> None:
        tree = unit.getroottree()
        if self.schema.validate(tree):
            return
        log = cast(Iterable[Any], self.schema.error_log)
        entries = list(log)
        typed = {(e.line, e.path) for e in entries if _ATOMIC.search(e.message)}
        for e in entries:
            if "[facet '" in e.message and (e.line, e.path) in typed:
                continue  # libxml2 says the same again for the type; keep the clearer one
            node = _node_at(unit, e.path)
            path = "/OpenItems" if node is unit else self._path(node)
            line = root_line if node is unit else e.line
            m = _ELEMENT_PREFIX.match(_plain(e.message))
            if m and m[2]:
                path += f"/@{m[2]}"
            self._add(line, path, explain_message(e.message))

    def _add(self, line: int, path: str, message: str, code: str = "schema_violation") -> None:
        key = (line, path, message)
        if key in self.seen:
            return
        self.seen.add(key)
        self.total += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(error(code, f"line {line}, {path}: {message}", line, path))

    def _path(self, element: Any) -> str:
        steps: list[str] = []
        node = element
        while node is not None:
            name = etree.QName(node).localname
            parent = node.getparent()
            if parent is None:
                steps.append(name)
            elif node.tag == DEBTOR and parent.getparent() is None:
                steps.append(f"Debtor[{self.debtor}]")
            elif node.tag == INVOICE:
                position = self.invoices_removed + sum(1 for _ in node.itersiblings(INVOICE, preceding=True)) + 1
                steps.append(f"Invoice[{position}]")
            else:
                same = [c for c in parent if c.tag == node.tag]
                steps.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
            node = parent
        return "/" + "/".join(reversed(steps))

    def duplicate_problems(self) -> None:
        labels = {"UniqueInvoiceNumber": ("invoice", "Invoice numbers"), "UniqueDebtorCode": ("debtor", "Debtor codes")}
        for (constraint, value), places in sorted(self.key_lines.items()):
            if len(places) < 2:
                continue
            kind, plural = labels.get(constraint, ("key", "Keys"))
            lines = ", ".join(str(line) for line, _ in places)
            for line, path in places:
                message = f"{plural} must be unique: {kind} {value} occurs on lines {lines}"
                self._add(line, path, message, f"duplicate_{kind}_{'number' if kind == 'invoice' else 'code'}")


def _node_at(unit: Any, path: str | None) -> Any:
    """The element at libxml2's path (``/*/*[2]/xi:include``) in ``unit``; ``unit`` when it is not found."""
    if not path:
        return unit
    prefixes = {k: v for element in unit.iter() for k, v in element.nsmap.items() if k}
    try:
        nodes = unit.getroottree().xpath(path, namespaces=prefixes)
    except etree.XPathError:
        return unit
    return nodes[0] if isinstance(nodes, list) and nodes and isinstance(nodes[0], etree._Element) else unit


def explain_message(message: str) -> str:
    """libxml2's message without namespaces and the element it is about, with the schema's types in words."""
    text = _plain(message).rstrip(".")
    m = _ELEMENT_PREFIX.match(text)
    if m:
        text = text[m.end() :]  # the path names the element and attribute
    atomic = _ATOMIC.search(text)
    if atomic:
        words = TYPE_WORDS.get(atomic[1], atomic[1])
        text = f"{text[: atomic.start()].strip()} is not {words}"
    text = text.replace("Expected is ( ", "expected: ").replace(" ).", "").replace(" )", "")
    return text


def explain(source: IO[bytes], first: FirstPass) -> list[Problem]:
    """Every schema error (up to MAX_LISTED) with its line and element path."""
    explainer = _Explainer(first)
    try:
        explainer.run(source)
    except etree.XMLSyntaxError as exc:  # not well-formed after all (found by fuzzing: a document cut short)
        raise syntax_error(exc) from None
    explainer.duplicate_problems()
    problems = explainer.problems
    if not explainer.total:
        # Nothing located (should not happen): report what the first pass said, without lines.
        for message in first.messages[:MAX_LISTED]:
            problems.append(error("schema_violation", explain_message(message)))
    total = max(explainer.total, len(first.messages))
    if total > len(problems) or first.stopped:
        more = f"at least {MAX_COUNTED}" if first.stopped else str(total)
        problems.append(
            notice("schema_errors_truncated", f"{len(problems)} of {more} schema errors are listed; fix these first")
        )
    return problems


def validate_payt_xml(source: IO[bytes]) -> list[Problem]:
    """The schema problems of a seekable payt-xml stream (empty when valid); the stream is left at its start.

    A key whose hash the first pass saw twice is an error only when the second pass finds the same key twice.

    Raises ``RejectFile`` for a DOCTYPE or XML that is not well-formed.
    """
    start = source.tell()
    try:
        first = first_pass(source)
        if first.valid:
            return []
        source.seek(start)
        return explain(source, first)
    finally:
        source.seek(start)


def duplicate_keys(source: IO[bytes], stream: ElementStream) -> list[Problem]:
    """After ``stream`` (with ``hash_keys``) has read a file that is valid against the stream schema: its
    repeated keys, located and compared exactly (empty when no hash was repeated, or only by a collision).
    Reads ``source`` again from its current position, only when a hash was repeated."""
    first = stream.verdict()
    if not first.repeated:
        return []
    return explain(source, FirstPass(False, [], False, first.repeated))


class PreadReader:
    """A read-only file object over an inherited descriptor, using ``pread`` from its own offset."""

    def __init__(self, fd: int, offset: int = 0):
        self.fd = fd
        self.start = offset
        self.offset = offset

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, os.fstat(self.fd).st_size - self.offset)
        data = os.pread(self.fd, size, self.offset)
        self.offset += len(data)
        return data

    def tell(self) -> int:
        return self.offset - self.start

    def seek(self, position: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError("PreadReader seeks from the start only")
        self.offset = self.start + position
        return position
